/**
 * Dashboard previews are rendered in a worker process (src/web/previewRenderer.ts): the PNG is the
 * one the gateway process would make, a file that cannot be rendered fails with its reason, a
 * worker that crashes or hangs fails only its own render and is replaced, and closing waits for a
 * render in flight, then refuses work. Uses the built worker (npm test builds first).
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { NotRenderable, renderPng } from '../../src/web/images';
import { PreviewRenderer } from '../../src/web/previewRenderer';
import { tempDir, writeTemp } from '../helpers/gatewayHarness';
import { phantomFile } from '../helpers/phantom';
import { claimedFrameFile } from '../helpers/dicomBuild';

const built = fs.existsSync(path.resolve(__dirname, '..', '..', 'dist', 'web', 'previewWorker.js'));

type Internals = { worker: { kill(signal: string): boolean } };

(built ? describe : describe.skip)('preview renderer (worker process)', () => {
  let dir: string;
  let renderer: PreviewRenderer;
  beforeAll(() => {
    dir = tempDir('previews');
  });
  beforeEach(() => {
    renderer = new PreviewRenderer(2_000);
  });
  afterEach(() => renderer.close());
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('renders the same PNG as the gateway process would, in another process', async () => {
    const file = writeTemp(dir, 'us.dcm', phantomFile({ seed: 5 }));
    expect(renderer.pid).toBeNull();
    const png = await renderer.render(file, 128);
    expect(renderer.pid).not.toBeNull();
    expect(renderer.pid).not.toBe(process.pid);
    expect(png.equals(await renderPng(file, 128))).toBe(true);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
  });

  test('any frame of a cine renders, in the worker as in this process; a frame it lacks fails with the reason', async () => {
    const file = writeTemp(dir, 'cine.dcm', phantomFile({ frames: 3, seed: 8 }));
    const first = await renderer.render(file, 96);
    const third = await renderer.render(file, 96, 2);
    expect(third.equals(first)).toBe(false);
    expect(third.equals(await renderPng(file, 96, 2))).toBe(true);
    expect(first.equals(await renderPng(file, 96))).toBe(true);
    await expect(renderer.render(file, 96, 3)).rejects.toThrow(/no frame 4: the instance has 3/);
    // an RGB cine in a native syntax is shown in colour, frame by frame
    const rgb = writeTemp(dir, 'rgb-cine.dcm', phantomFile({ frames: 3, photometric: 'RGB', seed: 8 }));
    const [rgb0, rgb2] = [await renderPng(rgb, 96), await renderPng(rgb, 96, 2)];
    expect(rgb2.equals(rgb0)).toBe(false);
    expect((await sharp(rgb2).metadata()).channels).toBe(3);
    await expect(renderPng(rgb, 96, 3)).rejects.toThrow(/no frame 4: the instance has 3/);
  });

  test('a file that is not DICOM fails with the reason; the worker goes on', async () => {
    const bad = writeTemp(dir, 'bad.dcm', Buffer.from('not dicom at all'));
    await expect(renderer.render(bad, 64)).rejects.toThrow(/DICM|DICOM|Part 10|preamble|parse/i);
    const before = renderer.pid;
    await renderer.render(writeTemp(dir, 'ok.dcm', phantomFile({ seed: 6 })), 64);
    expect(renderer.pid).toBe(before);
  });

  test('a frame too large to preview is refused as not renderable, across the process boundary', async () => {
    const big = path.join(dir, 'big.dcm');
    claimedFrameFile(big, 9000, 9000);
    await expect(renderer.render(big, 64)).rejects.toBeInstanceOf(NotRenderable);
    await expect(renderer.render(big, 64)).rejects.toThrow(/one frame is 232 MB/);
  });

  test('a worker that crashes mid-render fails that render; the next one runs in a new worker', async () => {
    const file = writeTemp(dir, 'us2.dcm', phantomFile({ seed: 7 }));
    await renderer.render(file, 64);
    const first = renderer.pid;
    const worker = (renderer as unknown as Internals).worker;
    // held (SIGSTOP) so the render is certainly in flight when the worker aborts natively
    worker.kill('SIGSTOP');
    const inFlight = renderer.render(file, 64);
    worker.kill('SIGABRT');
    worker.kill('SIGCONT');
    await expect(inFlight).rejects.toThrow(/preview worker stopped \(exit SIGABRT\)/);
    expect((await renderer.render(file, 64)).subarray(1, 4).toString()).toBe('PNG');
    expect(renderer.pid).not.toBeNull();
    expect(renderer.pid).not.toBe(first);
  });

  test('a render that hangs is failed after the time limit and its worker killed', async () => {
    const file = writeTemp(dir, 'us4.dcm', phantomFile({ seed: 9 }));
    await renderer.render(file, 64);
    (renderer as unknown as Internals).worker.kill('SIGSTOP');
    const started = Date.now();
    await expect(renderer.render(file, 64)).rejects.toThrow(/longer than 2 s/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect((await renderer.render(file, 64)).subarray(1, 4).toString()).toBe('PNG');
  });

  test('close lets a render in flight finish, then refuses work', async () => {
    const file = writeTemp(dir, 'us3.dcm', phantomFile({ seed: 8 }));
    const inFlight = renderer.render(file, 256);
    await renderer.close();
    expect((await inFlight).subarray(1, 4).toString()).toBe('PNG');
    await expect(renderer.render('/nowhere.dcm', 64)).rejects.toThrow(/closed/);
  });
});
