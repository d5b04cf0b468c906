/**
 * Dashboard previews are rendered in a worker thread (src/web/previewRenderer.ts): the PNG is the
 * one the main thread would make, a file that cannot be rendered fails with its reason, the
 * worker comes back after it dies, and closing waits for a render in flight, then refuses work. Uses the built worker
 * (npm test builds first).
 */
import fs from 'node:fs';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { NotRenderable, renderPng } from '../../src/web/images';
import { PreviewRenderer } from '../../src/web/previewRenderer';
import { tempDir, writeTemp } from '../helpers/gatewayHarness';
import { phantomFile } from '../helpers/phantom';

const built = fs.existsSync(path.resolve(__dirname, '..', '..', 'dist', 'web', 'previewWorker.js'));

(built ? describe : describe.skip)('preview renderer (worker thread)', () => {
  let dir: string;
  let renderer: PreviewRenderer;
  beforeAll(() => {
    dir = tempDir('previews');
  });
  beforeEach(() => {
    renderer = new PreviewRenderer();
  });
  afterEach(() => renderer.close());
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('renders the same PNG as the main thread would, in another thread', async () => {
    const file = writeTemp(dir, 'us.dcm', phantomFile({ seed: 5 }));
    expect(renderer.threadId).toBeNull();
    const png = await renderer.render(file, 128);
    expect(renderer.threadId).not.toBeNull();
    expect(renderer.threadId).not.toBe(threadId);
    expect(png.equals(await renderPng(file, 128))).toBe(true);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
  });

  test('a file that is not DICOM fails with the reason; the worker goes on', async () => {
    const bad = writeTemp(dir, 'bad.dcm', Buffer.from('not dicom at all'));
    await expect(renderer.render(bad, 64)).rejects.toThrow(/DICM|DICOM|Part 10|preamble|parse/i);
    const before = renderer.threadId;
    await renderer.render(writeTemp(dir, 'ok.dcm', phantomFile({ seed: 6 })), 64);
    expect(renderer.threadId).toBe(before);
  });

  test('an oversized file is refused as not renderable', async () => {
    const big = path.join(dir, 'big.dcm');
    fs.writeFileSync(big, '');
    fs.truncateSync(big, 64 * 1024 * 1024 + 1);
    await expect(renderer.render(big, 64)).rejects.toBeInstanceOf(NotRenderable);
  });

  test('a worker that dies is replaced on the next request', async () => {
    const file = writeTemp(dir, 'us2.dcm', phantomFile({ seed: 7 }));
    await renderer.render(file, 64);
    const first = renderer.threadId;
    // the worker thread ends underneath us, between requests (ending it mid-render can abort the
    // process when a native module is mid-call: close() waits for renders in flight instead)
    await (renderer as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    await new Promise((r) => setImmediate(r));
    expect(renderer.threadId).toBeNull();
    expect((await renderer.render(file, 64)).subarray(1, 4).toString()).toBe('PNG');
    expect(renderer.threadId).not.toBeNull();
    expect(renderer.threadId).not.toBe(first);
  });

  test('close lets a render in flight finish, then refuses work', async () => {
    const file = writeTemp(dir, 'us3.dcm', phantomFile({ seed: 8 }));
    const inFlight = renderer.render(file, 256);
    await renderer.close();
    expect((await inFlight).subarray(1, 4).toString()).toBe('PNG');
    await expect(renderer.render('/nowhere.dcm', 64)).rejects.toThrow(/closed/);
  });
});
