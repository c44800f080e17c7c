// The run configuration of an OCI image config (image-spec config.md, "config":
// https://github.com/opencontainers/image-spec/blob/main/config.md#properties), the part a
// microVM needs. One schema for what buildah reports at build time and what the registry
// reads back at push time, so the two cannot drift.
import { z } from 'zod';

export const OciRunConfigSchema = z
  .object({
    Entrypoint: z.array(z.string()).nullish(),
    Cmd: z.array(z.string()).nullish(),
    Env: z.array(z.string()).nullish(),
    WorkingDir: z.string().nullish(),
    User: z.string().nullish(),
    ExposedPorts: z.record(z.string(), z.unknown()).nullish(),
    Labels: z.record(z.string(), z.string()).nullish(),
    StopSignal: z.string().nullish(),
    Volumes: z.record(z.string(), z.unknown()).nullish(),
  })
  .passthrough();
export type OciRunConfig = z.infer<typeof OciRunConfigSchema>;
