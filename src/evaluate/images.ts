/** Reading BUSI-layout PNG images and masks into the gateway's GrayFrame form. */
import sharp from 'sharp';
import { luma } from '../dicom/gray';
import { GrayFrame } from '../types/domain';

/** Decodes an image file to 8-bit gray (RGB → the decoder's BT.601 luma, as in training; alpha ignored). */
export async function readGrayImage(file: string): Promise<GrayFrame> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  const out = new Uint8Array(n);
  const c = info.channels;
  if (c === 1 || c === 2) for (let i = 0; i < n; i++) out[i] = data[i * c];
  else for (let i = 0; i < n; i++) out[i] = luma(data[i * c], data[i * c + 1], data[i * c + 2]);
  return { width: info.width, height: info.height, data: out };
}

/** A mask file as 0/1 (any non-zero gray value is lesion). */
export async function readMask(file: string): Promise<GrayFrame> {
  const g = await readGrayImage(file);
  for (let i = 0; i < g.data.length; i++) g.data[i] = g.data[i] > 0 ? 1 : 0;
  return g;
}
