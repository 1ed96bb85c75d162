/**
 * The tool a permission rule names: `Bash` of `Bash(npm test:*)`. Imports nothing, so that the
 * runner can use it without zod.
 */
export const toolOfRule = (rule: string): string => rule.replace(/\(.*$/, '');
