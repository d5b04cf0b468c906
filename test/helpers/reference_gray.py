#!/usr/bin/python3
"""Reference decoder for the decode tests.

Decodes a DICOM file with DCMTK (dcm2pnm / dcmj2pnm / dcml2pnm) or with pydicom + Pillow/OpenJPEG,
then turns every frame to gray with Pillow's Image.convert('L'), the conversion the model was
trained on. pydicom is the default for JPEG 2000 (DCMTK cannot read it) and for native YBR data
(DCMTK's YBR->RGB truncates and centres chroma on 127.5 instead of 128, PS3.3 C.7.6.3.1.2, which
puts it one level off the standard formula on most pixels).

usage: reference_gray.py INPUT.dcm OUTPUT.raw [--min-max] [--decoder dcmtk|pydicom]
Writes the gray frames one after the other to OUTPUT.raw and prints
{"decoder", "width", "height", "frames"} as JSON.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixel_data_handlers.util import convert_color_space

JPEG = {'1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70'}
JPEG_LS = {'1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81'}
JPEG_2000 = {'1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91'}


def with_dcmtk(path, ts, min_max):
    tool = 'dcmj2pnm' if ts in JPEG else 'dcml2pnm' if ts in JPEG_LS else 'dcm2pnm'
    with tempfile.TemporaryDirectory() as work:
        args = [tool, '+Fa', '+on'] + (['+Wm'] if min_max else []) + [path, os.path.join(work, 'f')]
        subprocess.run(args, check=True, capture_output=True)
        files = sorted(glob.glob(os.path.join(work, 'f.*.png')), key=lambda p: int(p.rsplit('.', 2)[1]))
        return [Image.open(p).convert('L') for p in files], tool


def with_pydicom(path, ts):
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if ts not in JPEG_2000 and ts not in JPEG and ds.PhotometricInterpretation in ('YBR_FULL', 'YBR_FULL_422'):
        arr = convert_color_space(arr, 'YBR_FULL', 'RGB')
    if int(getattr(ds, 'NumberOfFrames', 1) or 1) == 1:
        arr = arr[None]
    mode = 'RGB' if int(ds.SamplesPerPixel) == 3 else 'L'
    return [Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8), mode).convert('L') for a in arr], 'pydicom'


def main():
    src, out = sys.argv[1], sys.argv[2]
    options = sys.argv[3:]
    min_max = '--min-max' in options
    forced = options[options.index('--decoder') + 1] if '--decoder' in options else None
    header = pydicom.dcmread(src, stop_before_pixels=True)
    ts = str(header.file_meta.TransferSyntaxUID)
    native_ybr = ts not in JPEG | JPEG_LS | JPEG_2000 and str(header.PhotometricInterpretation).startswith('YBR')
    use_pydicom = forced == 'pydicom' or (forced is None and (ts in JPEG_2000 or native_ybr))
    frames, decoder = with_pydicom(src, ts) if use_pydicom else with_dcmtk(src, ts, min_max)
    with open(out, 'wb') as f:
        for frame in frames:
            f.write(frame.tobytes())
    print(json.dumps({'decoder': decoder, 'width': frames[0].width, 'height': frames[0].height, 'frames': len(frames)}))


if __name__ == '__main__':
    main()
