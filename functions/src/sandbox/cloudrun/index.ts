import { ExecutionsClient, JobsClient } from '@google-cloud/run';
import { PassThroughClient } from 'google-auth-library';
import { CloudRunLauncher } from './cloudrun-launcher.js';

export interface CloudRunSettings {
  jobName: string;
  apiUrl: string;
  /** A local stand-in of the Admin API: spoken to over plain HTTP/JSON, without credentials. */
  endpoint: URL | undefined;
  log: (message: string) => void;
}

/** The Cloud Run launcher on the official clients: Google's API with the ambient credentials, or a stand-in. */
export function createCloudRunLauncher(settings: CloudRunSettings): CloudRunLauncher {
  const endpoint = settings.endpoint;
  // The REST transport ("fallback") is what a plain HTTP stand-in can speak; `port` must be
  // given on its own, or the client dials 443.
  const clientOptions =
    endpoint === undefined
      ? {}
      : {
          fallback: true,
          apiEndpoint: endpoint.hostname,
          port: Number(endpoint.port || (endpoint.protocol === 'https:' ? 443 : 80)),
          protocol: endpoint.protocol.replace(':', ''),
          authClient: new PassThroughClient(),
        };
  return new CloudRunLauncher({
    jobs: new JobsClient(clientOptions),
    executions: new ExecutionsClient(clientOptions),
    jobName: settings.jobName,
    apiUrl: settings.apiUrl,
    log: settings.log,
  });
}
