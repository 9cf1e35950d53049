// Without zod, so that the browser bundle, which needs only these, does not carry zod.

/**
 * Session ids appear in URLs and store keys, so they are restricted to a safe alphabet; `.` and `..`
 * are not ids, since a URL cannot name them (`/v1/sessions/../messages` is `/v1/messages`).
 */
export const SESSION_ID_PATTERN = /^(?!\.\.?$)[A-Za-z0-9._:-]{1,128}$/;
export const DEFAULT_SESSION_ID = 'default';
