// Artifacts (reference §3 "Artifact proxy", §4, §6). Proxied paths name their experiment in the
// first segment; a path that does not is refused rather than given the default permission (the
// auth app's fallback, issues #13832, #24210, #24306). Every form is checked: both prefixes,
// multipart uploads and presigned URLs (#24567), which the auth app missed at one release or another.
import { artifactInMessage, artifactInPath, runOrUuid, run, type RouteDef } from './route-rule.ts';

const PROXY = '/{api,ajax-api}/2.0/mlflow-artifacts';
const NO_FALLBACK = 'auth app: the default permission when no experiment id can be read from the path; here that is refused';
/** The body's `path` is a local file name whose basename MLflow appends to the checked directory. */
const FILE_NAME = [{ from: 'message', field: 'path', kind: 'file-name' }] as const;

export const ARTIFACT_ROUTES: readonly RouteDef[] = [
  { at: `GET ${PROXY}/artifacts/{artifact_path...}`, find: [artifactInPath('READ')], deviation: NO_FALLBACK },
  { at: `PUT ${PROXY}/artifacts/{artifact_path...}`, find: [artifactInPath('EDIT')], deviation: NO_FALLBACK },
  { at: `DELETE ${PROXY}/artifacts/{artifact_path...}`, find: [artifactInPath('MANAGE')], deviation: NO_FALLBACK },
  { at: `GET ${PROXY}/artifacts`, find: [artifactInMessage('READ')], deviation: `${NO_FALLBACK}; listing the artifact root is for admins` },
  { at: `POST ${PROXY}/mpu/create/{artifact_path...}`, find: [artifactInPath('EDIT')], checksPaths: FILE_NAME, deviation: NO_FALLBACK },
  { at: `POST ${PROXY}/mpu/complete/{artifact_path...}`, find: [artifactInPath('EDIT')], checksPaths: FILE_NAME, deviation: NO_FALLBACK },
  { at: `POST ${PROXY}/mpu/abort/{artifact_path...}`, find: [artifactInPath('EDIT')], checksPaths: FILE_NAME, deviation: NO_FALLBACK },
  { at: `GET ${PROXY}/presigned/{artifact_path...}`, find: [artifactInPath('READ')], deviation: 'auth app 3.11.1: unchecked (#24567)' },
  // Flask routes that name the run instead (request.args only).
  { at: 'GET /get-artifact', find: [runOrUuid('READ', 'query')], checksPaths: [{ from: 'query', field: 'path', kind: 'relative' }] },
  {
    at: 'POST /ajax-api/2.0/mlflow/upload-artifact', find: [run('EDIT', 'run_uuid', 'query')],
    checksPaths: [{ from: 'query', field: 'path', kind: 'relative' }],
  },
];
