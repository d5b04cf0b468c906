/**
 * The pixels of a frame that its edge reaches through 4-neighbours, moving only over pixels that
 * `open(i)` allows: the background around a scan sector, or what lies outside a lesion (not its
 * holes). Pure: no I/O.
 */
export function reachedFromEdge(width: number, height: number, open: (i: number) => boolean): Uint8Array {
  const out = new Uint8Array(width * height);
  const stack: number[] = [];
  const seed = (i: number) => {
    if (!out[i] && open(i)) {
      out[i] = 1;
      stack.push(i);
    }
  };
  for (let x = 0; x < width; x++) {
    seed(x);
    seed((height - 1) * width + x);
  }
  for (let y = 0; y < height; y++) {
    seed(y * width);
    seed(y * width + width - 1);
  }
  while (stack.length) {
    const i = stack.pop()!;
    const x = i % width;
    if (x > 0) seed(i - 1);
    if (x < width - 1) seed(i + 1);
    if (i >= width) seed(i - width);
    if (i < width * (height - 1)) seed(i + width);
  }
  return out;
}
