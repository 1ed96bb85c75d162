import type { Firestore } from '@google-cloud/firestore';

/**
 * A Firestore client for the configured project: Google's service with the ambient credentials,
 * or the emulator (plain gRPC, no credentials). Loaded on demand: the client costs tens of MB.
 */
export async function openFirestore(settings: { projectId: string; emulatorHost: string | undefined }): Promise<Firestore> {
  const [{ Firestore }, { PassThroughClient }] = await Promise.all([import('@google-cloud/firestore'), import('google-auth-library')]);
  const { projectId, emulatorHost } = settings;
  return new Firestore(
    emulatorHost === undefined ? { projectId } : { projectId, host: emulatorHost, ssl: false, authClient: new PassThroughClient() },
  );
}
