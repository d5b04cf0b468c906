import { polygonArea, traceOutline } from '../../src/postprocess/outline';

/** indices of the set cells of a picture drawn with '#' */
function drawn(rows: string[]): { pixels: number[]; width: number } {
  const width = rows[0].length;
  const pixels: number[] = [];
  rows.forEach((r, y) => [...r].forEach((c, x) => c === '#' && pixels.push(y * width + x)));
  return { pixels, width };
}

/** pixels of the component plus its holes: what is not reached from outside through 4-neighbours */
function filledCount(set: Set<number>, width: number, height: number): number {
  const W = width + 2;
  const H = height + 2;
  const seen = new Uint8Array(W * H);
  const stack = [0];
  seen[0] = 1;
  let outside = 0;
  while (stack.length) {
    const i = stack.pop()!;
    outside++;
    const x = i % W;
    const y = (i - x) / W;
    for (const [nx, ny] of [[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]]) {
      if (nx < 0 || ny < 0 || nx >= W || ny >= H) continue;
      const j = ny * W + nx;
      if (seen[j]) continue;
      const inner = nx >= 1 && ny >= 1 && nx <= width && ny <= height && set.has((ny - 1) * width + nx - 1);
      if (inner) continue;
      seen[j] = 1;
      stack.push(j);
    }
  }
  return W * H - outside;
}

/** the 8-connected component of `seed` in a random picture */
function randomComponent(seed: number, width: number, height: number, density: number): number[] {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const on = new Uint8Array(width * height).map(() => (rnd() < density ? 1 : 0));
  const c = Math.floor(height / 2) * width + Math.floor(width / 2);
  on[c] = 1;
  const seen = new Set([c]);
  const stack = [c];
  while (stack.length) {
    const i = stack.pop()!;
    const x = i % width;
    const y = (i - x) / width;
    for (let dy = -1; dy <= 1; dy++)
      for (let dx = -1; dx <= 1; dx++) {
        const nx = x + dx;
        const ny = y + dy;
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const j = ny * width + nx;
        if (on[j] && !seen.has(j)) {
          seen.add(j);
          stack.push(j);
        }
      }
  }
  return [...seen];
}

describe('outline of a component along pixel edges', () => {
  test('one pixel is its four corners; the offset moves it', () => {
    expect(traceOutline([0], 1)).toEqual([0, 0, 1, 0, 1, 1, 0, 1]);
    expect(traceOutline([5], 4, 10, 20)).toEqual([11, 21, 12, 21, 12, 22, 11, 22]);
  });

  test('a rectangle keeps only its four corners, clockwise on the screen', () => {
    const { pixels, width } = drawn(['.....', '.###.', '.###.', '.....']);
    const outline = traceOutline(pixels, width);
    expect(outline).toEqual([1, 1, 4, 1, 4, 3, 1, 3]);
    expect(polygonArea(outline)).toBe(6);
  });

  test('pixels touching at a corner are one component: the outline passes that corner twice', () => {
    const { pixels, width } = drawn(['#..', '.#.', '..#']);
    const outline = traceOutline(pixels, width);
    expect(polygonArea(outline)).toBe(3);
    const corners = [];
    for (let k = 0; k < outline.length; k += 2) corners.push(`${outline[k]},${outline[k + 1]}`);
    expect(corners.filter((c) => c === '1,1')).toHaveLength(2);
    expect(corners.filter((c) => c === '2,2')).toHaveLength(2);
  });

  test('a ring encloses its hole; an L-shape and a plus-sign are traced around', () => {
    const ring = drawn(['#####', '#...#', '#####']);
    expect(polygonArea(traceOutline(ring.pixels, ring.width))).toBe(15);
    const ell = drawn(['#..', '#..', '###']);
    expect(traceOutline(ell.pixels, ell.width)).toEqual([0, 0, 1, 0, 1, 2, 3, 2, 3, 3, 0, 3]);
    const plus = drawn(['.#.', '###', '.#.']);
    expect(polygonArea(traceOutline(plus.pixels, plus.width))).toBe(5);
    expect(traceOutline(plus.pixels, plus.width)).toHaveLength(24);
  });

  test('random components: the outline encloses exactly the pixels and their holes, on pixel corners', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const width = 7 + (seed % 23);
      const height = 5 + (seed % 17);
      const pixels = randomComponent(seed, width, height, 0.35 + (seed % 5) * 0.1);
      const outline = traceOutline(pixels, width);
      const offLattice = outline.filter((v, k) => !Number.isInteger(v) || v < 0 || v > (k % 2 ? height : width));
      expect([seed, polygonArea(outline), offLattice]).toEqual([seed, filledCount(new Set(pixels), width, height), []]);
    }
  });
});
