/**
 * Default ceilings on what a file may make decode allocate. A header is a claim, not a fact:
 * sizes are checked against these before any frame-sized buffer exists.
 */

/** frames per instance; a 60 s cine at 60 fps is 3 600 */
export const DEFAULT_MAX_FRAMES = 10_000;

/** pixels over all frames (512 Mi): bounds the gray output and, per frame, the decoder buffers */
export const DEFAULT_MAX_PIXELS = 512 * 1024 * 1024;

/**
 * The most a Deflated data set may inflate to in one piece (dcmjs inflates it whole, then copies
 * it): 256 MiB, or every pixel 3 bytes plus room for the header when that is less. A 1 MB file
 * could otherwise make the gateway hold gigabytes; Deflated is rare for images, and 256 MiB is a
 * cine of some 180 RGB frames of 800 × 600 (1.44 MB each).
 */
export const MAX_INFLATED_BYTES = 256 * 1024 * 1024;

export function maxInflatedBytes(maxPixels: number): number {
  return Math.min(MAX_INFLATED_BYTES, 3 * maxPixels + 16 * 1024 * 1024);
}
