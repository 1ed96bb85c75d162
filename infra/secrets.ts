import * as gcp from '@pulumi/gcp';
import type * as pulumi from '@pulumi/pulumi';
import * as random from '@pulumi/random';
import { deletionPolicy, type Names, type Settings } from './config.js';

/**
 * The API's two secrets in Secret Manager: the model key (from `pulumi config set --secret
 * anthropicApiKey`; none with Claude on Vertex AI) and the key that signs per-turn tokens (generated here). The functions read
 * them as secret environment variables; the values never appear in their plain configuration, in
 * the job or in an image. Who may read them is decided in identity.ts: the signing key both
 * functions' accounts, the model key the runner's alone, nobody else either.
 */

export interface ApiSecret {
  secret: gcp.secretmanager.Secret;
  version: gcp.secretmanager.SecretVersion;
}

export interface Secrets {
  /** Absent with Claude on Vertex AI. */
  modelKey: ApiSecret | undefined;
  tokenSecret: ApiSecret;
}

/** HMAC key length; the service requires at least 32 characters. */
export const TOKEN_SECRET_LENGTH = 64;

export function secrets(s: Settings, n: Names, modelKey: pulumi.Output<string> | undefined, apis: pulumi.Resource[]): Secrets {
  const secret = (logical: string, secretId: string, value: pulumi.Input<string>): ApiSecret => {
    const created = new gcp.secretmanager.Secret(
      logical,
      {
        project: s.project,
        secretId,
        replication: { auto: {} },
        deletionProtection: s.protect,
        deletionPolicy: deletionPolicy(s),
      },
      { dependsOn: apis },
    );
    const version = new gcp.secretmanager.SecretVersion(`${logical}-version`, { secret: created.id, secretData: value });
    return { secret: created, version };
  };

  const signingKey = new random.RandomPassword('token-secret-value', { length: TOKEN_SECRET_LENGTH, special: false });

  return {
    modelKey: modelKey === undefined ? undefined : secret('model-key', n.modelKeySecret, modelKey),
    tokenSecret: secret('token-secret', n.tokenSecret, signingKey.result),
  };
}
