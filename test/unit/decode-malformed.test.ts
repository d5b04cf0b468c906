/**
 * Broken and foreign files from shared/dicom-samples: decode either succeeds or throws a
 * DecodeError with a reason code; it never throws anything else, hangs or allocates what a
 * header merely claims.
 */
import { existsSync, readdirSync, readFileSync } from 'fs';
import { join, resolve } from 'path';
import { DecodeError, decodeInstance, readHeader } from '../../src/dicom/decode';
import { DecodedInstance } from '../../src/types/domain';
import { ReasonCode } from '../../src/types/pipeline';

const SAMPLES = join(resolve(__dirname, '../../../shared'), 'dicom-samples');
const present = existsSync(SAMPLES);
if (!present) console.warn(`decode-malformed: skipped, ${SAMPLES} is absent`);

const files = present ? ['malformed', 'non-us'].flatMap((d) => readdirSync(join(SAMPLES, d)).map((f) => `${d}/${f}`)).sort() : [];
const PER_FILE_MS = 20_000;

type Outcome = { ok: DecodedInstance } | { error: DecodeError };

async function outcome(file: string): Promise<Outcome> {
  try {
    return { ok: await decodeInstance(readFileSync(join(SAMPLES, file))) };
  } catch (e) {
    if (!(e instanceof DecodeError)) throw new Error(`${file}: threw ${String(e)} instead of a DecodeError`);
    return { error: e };
  }
}

const reasonOf = (o: Outcome): ReasonCode | 'ok' => ('ok' in o ? 'ok' : o.error.reason);

/** What each file must give; a change here is a behaviour change worth a look. */
const EXPECTED: Record<string, ReasonCode | 'ok'> = {
  'malformed/3gb-bulk-data-truncated.dcm': 'decode.malformed', // Rows / Columns with VM 2, pixel length 3 GiB
  'malformed/GH177_CT1_IVRLE_BigEndian_undefined_length.dcm': 'decode.malformed',
  'malformed/Issue1097_DeflatedWithSQ.dcm': 'decode.no_pixel_data',
  'malformed/MR_small_bigendian.dcm': 'ok',
  'malformed/MR_small_implicit.dcm': 'ok',
  'malformed/MR_truncated.dcm': 'decode.malformed',
  'malformed/emri_small_jpeg_2k_lossless_too_short.dcm': 'ok', // OpenJPEG decodes what is there
  'malformed/image_dfl.dcm': 'ok',
  'malformed/meta_missing_tsyntax.dcm': 'decode.malformed',
  'malformed/no_meta.dcm': 'decode.malformed',
  'malformed/no_preamble_dicm_in_data.dcm': 'decode.malformed',
  'non-us/CT_small.dcm': 'ok',
  'non-us/GH133_MG.dcm': 'ok',
  'non-us/MR_small.dcm': 'ok',
  'non-us/SC_rgb_dcmtk_+eb+cy+s2.dcm': 'ok',
  'non-us/multiframe_WSI_jpeg.dcm': 'decode.malformed', // edge tiles are smaller JPEGs than Rows x Columns
};

(present ? describe : describe.skip)('malformed and non-ultrasound files', () => {
  test.each(files)(
    '%s: a result or a DecodeError',
    async (file) => {
      const result = await outcome(file);
      if ('error' in result) expect(result.error.message.length).toBeGreaterThan(10);
      else expect(result.ok.frames.length).toBeGreaterThan(0);
      expect(reasonOf(result)).toBe(EXPECTED[file]);
    },
    PER_FILE_MS,
  );

  test.each(files)(
    '%s: readHeader gives a header or a DecodeError',
    async (file) => {
      await readHeader(join(SAMPLES, file)).catch((e) => expect(e).toBeInstanceOf(DecodeError));
    },
    PER_FILE_MS,
  );

  test('a 3 GiB Pixel Data claim in a 100 kB file is refused without allocating it', async () => {
    const before = process.memoryUsage().arrayBuffers;
    const result = await outcome('malformed/3gb-bulk-data-truncated.dcm');
    expect(['decode.malformed', 'decode.too_large']).toContain(reasonOf(result));
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  test('MR_small in Little Endian, Big Endian and Implicit VR decodes to the same 16-bit windowed frame', async () => {
    const frames = await Promise.all(['non-us/MR_small.dcm', 'malformed/MR_small_bigendian.dcm', 'malformed/MR_small_implicit.dcm'].map(outcome));
    const [le, be, implicit] = frames.map((o) => ('ok' in o ? o.ok.frames[0].data : null));
    expect(le).not.toBeNull();
    expect(be).toEqual(le);
    expect(implicit).toEqual(le);
    expect(new Set(le).size).toBeGreaterThan(100); // a real image, not a constant
  });

  test('the truncated MR says how much Pixel Data is missing', async () => {
    const result = await outcome('malformed/MR_truncated.dcm');
    expect('error' in result && result.error.message).toMatch(/8130 bytes, 8192 expected/);
  });
});
