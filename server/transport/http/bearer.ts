/** The credential in an `Authorization: Bearer <credential>` header, as every HTTP route reads it. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
