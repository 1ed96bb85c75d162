import * as gcp from '@pulumi/gcp';
import type { Settings } from './config.js';

/**
 * The Google APIs clauderun uses, enabled in the project. Every other resource depends on them
 * (creating a resource of a disabled API fails). They stay enabled on `pulumi destroy`: other
 * things in the project may use them too.
 */
export const REQUIRED_APIS = [
  'artifactregistry.googleapis.com', // the sandbox image; the function's build images
  'cloudbuild.googleapis.com', // Cloud Functions builds the API with Cloud Build
  'cloudfunctions.googleapis.com', // the API's two functions
  'cloudscheduler.googleapis.com', // the sweeper's every-minute call
  'cloudresourcemanager.googleapis.com', // project-level IAM grants
  'compute.googleapis.com', // the sandbox network, its firewall policy, the runner's internal load balancer
  'firestore.googleapis.com', // conversations, turns, events
  'iam.googleapis.com', // service accounts, the job launcher role
  'logging.googleapis.com', // build and run logs
  'run.googleapis.com', // the sandbox job; 2nd gen functions run on Cloud Run
  'secretmanager.googleapis.com', // the model key, the token-signing key
  'storage.googleapis.com', // state archives, the API's source upload
] as const;

/** Claude on Vertex AI is served through the Vertex AI API (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude). */
export const VERTEX_API = 'aiplatform.googleapis.com';

export function enableApis(s: Settings): gcp.projects.Service[] {
  const services: string[] = [...REQUIRED_APIS, ...(s.modelUpstream === 'vertex' ? [VERTEX_API] : [])];
  return services.map(
    (service) =>
      new gcp.projects.Service(`api-${service.split('.')[0]}`, {
        project: s.project,
        service,
        disableOnDestroy: false,
        disableDependentServices: false,
      }),
  );
}
