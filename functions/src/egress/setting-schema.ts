import { z } from 'zod';

/**
 * An egress setting as a zod schema, for the service's configuration and the stack's alike: the
 * text goes through its parser, and the parser's own error (`Refusal`) becomes an issue naming
 * `name` (the variable or the stack key); any other error is a bug and is thrown.
 */
export const settingSchema = <Parsed>(name: string, parse: (text: string) => Parsed, Refusal: new (...args: never[]) => Error, prefix = '') =>
  z
    .string()
    .optional()
    .transform((v, ctx): Parsed => {
      try {
        return parse(v ?? '');
      } catch (error) {
        if (!(error instanceof Refusal)) throw error;
        ctx.addIssue({ code: 'custom', message: `${name}: ${prefix}${error.message}` });
        return z.NEVER;
      }
    });
