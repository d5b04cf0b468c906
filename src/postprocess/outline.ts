/**
 * The outer outline of one 8-connected component, as a polygon along the pixels' edges
 * ("crack following"): its vertices are pixel corners, so (0, 0) is the top-left corner of the
 * top-left pixel, the convention of SR SCOORD (PS3.3 C.18.6.1.2). The polygon encloses exactly
 * the component's pixels and any holes in it; where two pixels touch only at a corner the outline
 * passes through that corner twice. Only corners where the outline turns are kept.
 * Pure: no I/O.
 */

/**
 * `pixels` are indices into a `width`-wide map; returns [x0, y0, x1, y1, …] (not closed: the last
 * vertex joins the first), in the map's coordinates plus (`offsetX`, `offsetY`).
 */
export function traceOutline(pixels: ArrayLike<number>, width: number, offsetX = 0, offsetY = 0): number[] {
  if (pixels.length === 0) return [];
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (let k = 0; k < pixels.length; k++) {
    const x = pixels[k] % width;
    const y = (pixels[k] - x) / width;
    minX = Math.min(minX, x);
    minY = Math.min(minY, y);
    maxX = Math.max(maxX, x);
    maxY = Math.max(maxY, y);
  }
  // the component alone, with a one-pixel empty border so that lookups need no bounds checks
  const bw = maxX - minX + 3;
  const bh = maxY - minY + 3;
  const inside = new Uint8Array(bw * bh);
  let start = Infinity;
  for (let k = 0; k < pixels.length; k++) {
    const x = pixels[k] % width;
    const y = (pixels[k] - x) / width;
    const i = (y - minY + 1) * bw + (x - minX + 1);
    inside[i] = 1;
    start = Math.min(start, i);
  }
  const filled = (x: number, y: number) => inside[y * bw + x] === 1;

  // The first pixel in raster order has nothing above it: walk from its top-left corner along its
  // top edge, eastwards, clockwise on the screen with the component on the right.
  const sx = start % bw;
  const sy = (start - sx) / bw;
  const out: number[] = [sx, sy];
  let vx = sx + 1;
  let vy = sy;
  let dx = 1;
  let dy = 0;
  const limit = 4 * pixels.length + 8; // each pixel has four edges
  for (let steps = 0; steps < limit; steps++) {
    // the two pixels ahead of the vertex, on the left and on the right of the way on
    const ahead = (sx2: number, sy2: number) => filled(Math.floor(vx + (dx + sx2) / 2), Math.floor(vy + (dy + sy2) / 2));
    const leftAhead = ahead(dy, -dx);
    const rightAhead = ahead(-dy, dx);
    let ndx: number;
    let ndy: number;
    if (leftAhead) {
      // 8-connected: a pixel touching the one on our right at a corner is part of the component
      ndx = dy;
      ndy = -dx;
    } else if (rightAhead) {
      ndx = dx;
      ndy = dy;
    } else {
      ndx = -dy;
      ndy = dx;
    }
    if (vx === sx && vy === sy) break; // back at the start (arriving northwards, turning east)
    if (ndx !== dx || ndy !== dy) out.push(vx, vy);
    dx = ndx;
    dy = ndy;
    vx += dx;
    vy += dy;
  }
  const ox = minX - 1 + offsetX;
  const oy = minY - 1 + offsetY;
  for (let k = 0; k < out.length; k += 2) {
    out[k] += ox;
    out[k + 1] += oy;
  }
  return out;
}

/** Shoelace area of a polygon given as [x0, y0, x1, y1, …] (positive when clockwise on the screen). */
export function polygonArea(points: number[]): number {
  let twice = 0;
  const n = points.length / 2;
  for (let k = 0; k < n; k++) {
    const j = (k + 1) % n;
    twice += points[2 * k] * points[2 * j + 1] - points[2 * j] * points[2 * k + 1];
  }
  return twice / 2;
}
