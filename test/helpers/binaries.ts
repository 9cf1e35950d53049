import { execFileSync } from 'node:child_process';

/**
 * The path of a system program the test needs. Locally a missing one skips the check (returns
 * undefined); with SLUICE_REQUIRE_BINARIES=1 (set by .ci/run) it fails the test.
 */
export function requireBinary(name: string): string | undefined {
  try {
    return execFileSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    return missingBinary(name);
  }
}

/** What to do about a program that is not there: fail under SLUICE_REQUIRE_BINARIES=1, else skip. */
export function missingBinary(name: string, why = ''): undefined {
  if (process.env.SLUICE_REQUIRE_BINARIES === '1') {
    throw new Error(`${name} is required (SLUICE_REQUIRE_BINARIES=1)${why}; run test/install-system-deps.sh`);
  }
  console.warn(`skipping: ${name} is not installed${why}`);
  return undefined;
}
