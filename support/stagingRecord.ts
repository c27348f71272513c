/**
 * Staging stack outputs as the promotion gate reads them: a healthy record by default, with any
 * field overridden per test. Shared by the pure decision tests and the prod program tests.
 */
import type { StagingOutputs } from "../components/promotion/readStaging";

type Fields = Record<string, unknown>;

/** What a healthy record is built from. */
export interface StagingRecordBasis {
  /** `sha256:<64 hex>`; also the local `imageRef`. */
  digest: string;
  /** When staging's readiness check ran (ISO-8601). */
  checkedAt: string;
  /** The backend version staging reported. */
  version: string;
}

/** Builders for one basis: each returns a fresh object with `overrides` spread over the healthy fields. */
export function stagingRecord(basis: StagingRecordBasis) {
  const hardening = (overrides: Fields = {}): Fields => ({
    user: "10001:10001",
    readOnlyRootFilesystem: true,
    capabilitiesDropped: ["ALL"],
    noNewPrivileges: true,
    ...overrides,
  });
  const readiness = (overrides: Fields = {}): Fields => ({
    ready: true,
    imageDigest: basis.digest,
    checkedAt: basis.checkedAt,
    url: "http://127.0.0.1:8080/readyz",
    version: basis.version,
    hardening: hardening(),
    ...overrides,
  });
  const outputs = (overrides: Fields = {}): Fields => ({
    environment: "staging",
    imageRef: basis.digest,
    imageDigest: basis.digest,
    url: "http://127.0.0.1:8080",
    readiness: readiness(),
    ...overrides,
  });
  return { hardening, readiness, outputs };
}

/** A copy of `record` without `key`. */
export function without(record: Fields, key: string): Fields {
  const copy = { ...record };
  delete copy[key];
  return copy;
}

/** Outputs as plain (non-secret) details, the way a reader of plain stack outputs sees them. */
export function plainOutputs(values: Readonly<Record<string, unknown>>): StagingOutputs {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, { value }]));
}
