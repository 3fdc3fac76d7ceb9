import type { OutgoingHttpHeaders } from 'node:http';

/** A refusal or failure the gateway answers itself, in MLflow's error shape (src/http/errors.ts writes it). */
export interface GatewayError {
  status: number;
  /** MLflow's error_code, e.g. UNAUTHENTICATED, PERMISSION_DENIED, INVALID_PARAMETER_VALUE. */
  code: string;
  message: string;
  headers?: OutgoingHttpHeaders;
  /** A 401 goes out with the Basic challenge unless this is false: a page's script must get no password prompt. */
  challenge?: false;
}

/** A bug costs the one request it happened in: this answer, with the id to find it in the log. */
export function internalError(requestId: string): GatewayError {
  return { status: 500, code: 'INTERNAL_ERROR', message: `the gateway failed to handle this request (request id ${requestId})` };
}
