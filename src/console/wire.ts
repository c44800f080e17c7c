// The console's own wire formats (beyond the /v1 views), shared by the server
// (src/console) and the page (web/src): no imports, so both compile it.

/** An image as the console lists it: sizes as `flick images` counts them. */
export interface ConsoleImageView {
  ref: string;
  name: string;
  tag: string;
  digest: string;
  ready: boolean;
  /** Root filesystem, config and manifest (the shared kernel and initrd apart). */
  size_bytes: number | null;
  /** Every blob, kernel and initrd included. */
  total_bytes: number | null;
  source_image: string | null;
  /** The container image it was built from (dev.flick.source-image-bytes). */
  source_image_bytes: number | null;
  created: string | null;
}

/** One wake, as the feed reports it and keeps the last few per instance. */
export interface RecentWake {
  tier: 'hot' | 'cold';
  /** resume: hot standby; template / own: cold, restored from the template or the instance's own snapshot. */
  mode: string;
  duration_ms: number;
  at: string;
}
