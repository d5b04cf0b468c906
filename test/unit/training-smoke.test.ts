/**
 * The training recipe's plumbing, on a synthetic 32×32 data set (no BUSI needed): a packed
 * train+val file (training/pack.py's format), two epochs, the best weights handed back as
 * float16 parts (training/weights.py, as the GPU machine returns them), --resume going on
 * from the checkpoint, a time-budgeted second cycle from given weights (--init), and progressive
 * resizing (--low-size), the scale augmentation's range (--zoom-range), and choosing the checkpoint
 * on val pictures at several scales (--val-zooms), and rebuilding PyTorch weights from an exported
 * graph (training/from_onnx.py). Needs PyTorch (python3-torch); skipped where it is missing.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { f32, onnxParity } from '../helpers/onnxParity';

const ROOT = path.resolve(__dirname, '..', '..');
const TRAINING = path.join(ROOT, 'training');
const PY = '/usr/bin/python3';

const haveTorch = (() => {
  try {
    execFileSync(PY, ['-c', 'import torch, numpy, PIL'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function py(script: string, args: string[] = []): string {
  return execFileSync(PY, ['-c', script, ...args], { encoding: 'utf8', cwd: TRAINING, env: { ...process.env, OMP_NUM_THREADS: '1' } });
}

function train(args: string[]): string {
  return execFileSync(PY, [path.join(TRAINING, 'train.py'), '--threads', '1', ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
}

(haveTorch ? describe : describe.skip)('training recipe (synthetic data)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-train-'));
    // discs on speckle: class 0 without a disc, 1 small bright-rimmed, 2 large dark
    py(
      `
import sys, numpy as np
sys.path.insert(0, '.')
from pack import write_packed
rng = np.random.default_rng(1)
def make(n):
    imgs, masks, labels = [], [], []
    yy, xx = np.mgrid[0:32, 0:32]
    for k in range(n):
        c = k % 3
        img = rng.uniform(80, 160, (32, 32))
        m = np.zeros((32, 32), np.uint8)
        if c:
            r = 5 if c == 1 else 9
            cy, cx = rng.integers(r, 32 - r, 2)
            m = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.uint8)
            img[m > 0] = 30 if c == 2 else 60
        imgs.append(img); masks.append(m); labels.append(c)
    return np.stack(imgs), np.stack(masks), np.array(labels), ['s%d.png' % i for i in range(n)]
write_packed(sys.argv[1], 32, {'train': make(24), 'val': make(9)})
`,
      [path.join(dir, 'packed.pt.gz')],
    );
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('trains, keeps the best weights on val, hands them back compact, and resumes', () => {
    const run = path.join(dir, 'run');
    const out = path.join(dir, 'out');
    const common = ['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', run, '--compact-out', out];
    const log1 = train([...common, '--epochs', '2']);
    expect(log1).toMatch(/epoch {3}2 .*val dice/);
    expect(JSON.parse(fs.readFileSync(path.join(run, 'history.json'), 'utf8'))).toHaveLength(2);
    const trained = () => JSON.parse(fs.readFileSync(path.join(run, 'trained.json'), 'utf8')) as { epochs: number; train_seconds: number };
    const first = trained(); // the whole run's epochs and time, which cpu_recipe.py records
    expect(first.epochs).toBe(2);
    expect(fs.existsSync(path.join(out, 'run.pt.part0'))).toBe(true);

    // the compact parts load back to the chosen weights, within float16 rounding
    const diff = py(
      `
import sys
sys.path.insert(0, '.')
from train import torch_load
from weights import load_state
a = torch_load(sys.argv[1]); b = load_state(sys.argv[2])
assert a.keys() == b.keys(), 'keys differ'
print(max(float((a[k].float() - b[k]).abs().max() / (a[k].float().abs().max() + 1e-6)) for k in a if a[k].is_floating_point()))
`,
      [path.join(run, 'best.pt'), path.join(out, 'run.pt')],
    );
    expect(Number(diff)).toBeLessThan(1e-3);

    const log2 = train([...common, '--epochs', '3', '--resume']);
    expect(log2).toMatch(/resumed at epoch 2/);
    expect(log2).toMatch(/epoch {3}3 /);
    expect(JSON.parse(fs.readFileSync(path.join(run, 'history.json'), 'utf8'))).toHaveLength(3);
    expect(trained().epochs).toBe(3); // counted over the resumed run, not only this call's epoch
    expect(trained().train_seconds).toBeGreaterThanOrEqual(first.train_seconds);
    expect(fs.existsSync(path.join(run, 'checkpoint.pt.tmp'))).toBe(false);

    // a save that dies half-way (as under kill -9) leaves the previous checkpoint whole, so
    // --resume still reads it: the checkpoint is written through a temporary file and a rename
    const resumed = py(
      `
import sys, torch
from weights import save_atomic
class Dies:
    def __reduce__(self): raise RuntimeError('killed while saving')
try:
    save_atomic({'epoch': 99, 'x': Dies()}, sys.argv[1])
except RuntimeError:
    pass
print(torch.load(sys.argv[1], map_location='cpu')['epoch'])
`,
      [path.join(run, 'checkpoint.pt')],
    );
    expect(resumed.trim()).toBe('3');

    // a second cycle from those weights, on a time budget (as the GPU runs are made): it stops by
    // itself once the budget is spent and hands back its own best weights
    const run2 = path.join(dir, 'cycle2');
    const log3 = train([...common.map((a) => (a === run ? run2 : a)), '--init', path.join(run, 'best.pt'), '--time-budget', '0.5']);
    expect(log3).toMatch(/initialised from/);
    expect(log3).toMatch(/100%/);
    expect(fs.existsSync(path.join(out, 'cycle2.pt.part0'))).toBe(true);
  }, 240_000);

  test('progressive resizing: the first share of the schedule at the low size, only full-size epochs chosen', () => {
    const run = path.join(dir, 'progressive');
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', run, '--epochs', '4', '--low-size', '16', '--low-share', '0.5']);
    expect(log).toMatch(/progressive resizing: 16x16 for the first 50%/);
    const history = JSON.parse(fs.readFileSync(path.join(run, 'history.json'), 'utf8')) as { size: number }[];
    expect(history.map((e) => e.size)).toEqual([16, 16, 32, 32]);
    const best = JSON.parse(fs.readFileSync(path.join(run, 'best.json'), 'utf8')) as { epoch: number };
    expect(best.epoch).toBeGreaterThanOrEqual(3);
    expect(() => train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--out', run, '--low-size', '20'])).toThrow(/multiple of 16/);
    expect(history.some((e) => 'average_from_step' in e)).toBe(false);

    // --reset-average-at-switch (rule 33): the moving average restarts at the first full-size epoch,
    // once, and a resumed run keeps counting its warm-up from there
    const reset = path.join(dir, 'progressive-reset');
    const common = ['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', reset, '--low-size', '16', '--low-share', '0.5', '--reset-average-at-switch'];
    const logR = train([...common, '--epochs', '3']);
    expect(logR.match(/moving average of the weights restarts/g)).toHaveLength(1);
    const logR2 = train([...common, '--epochs', '4', '--resume']);
    expect(logR2).not.toMatch(/moving average of the weights restarts/);
    const h = JSON.parse(fs.readFileSync(path.join(reset, 'history.json'), 'utf8')) as { size: number; average_from_step?: number }[];
    expect(h.map((e) => e.size)).toEqual([16, 16, 32, 32]);
    const stepsPerEpoch = 24 / 8; // the 24 synthetic train images in batches of 8
    expect(h.map((e) => e.average_from_step)).toEqual([undefined, undefined, 2 * stepsPerEpoch, 2 * stepsPerEpoch]);
    expect(() => train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--out', reset, '--reset-average-at-switch'])).toThrow(/needs --low-size/);
  }, 180_000);

  test('channels-last training (the GPU layout) hands back weights a plain network loads and runs alike', () => {
    const run = path.join(dir, 'cl');
    const out = path.join(dir, 'cl-out');
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', run, '--compact-out', out, '--epochs', '1', '--channels-last']);
    expect(log).toMatch(/channels-last/);
    const diff = py(
      `
import sys, torch
sys.path.insert(0, '.')
from train import load_members
from model import AttentionUNet
from weights import load_state
plain = load_members([sys.argv[1]])
cl = AttentionUNet(4).to(memory_format=torch.channels_last)
cl.load_state_dict(load_state(sys.argv[1]))
cl.eval()
x = torch.rand(2, 1, 32, 32)
with torch.no_grad():
    a, b = plain(x), cl(x.contiguous(memory_format=torch.channels_last))
print(max(float((a[i] - b[i]).abs().max()) for i in range(2)))
`,
      [path.join(out, 'cl.pt')],
    );
    expect(Number(diff)).toBeLessThan(1e-5);
  }, 120_000);

  test('ImageNet weights (training/mobilenet.py): Keras kernels land transposed in the right PyTorch tensors, the grey stem sums the RGB kernels', () => {
    // a Keras-named weight file with random values in the layout extract_nsfwjs.js writes
    const out = py(`
import sys, os, json, tempfile, numpy as np, torch
sys.path.insert(0, '.')
from mobilenet import MobileNetV2Encoder, keras_names, load_imagenet
rng = np.random.default_rng(0)
rgb = MobileNetV2Encoder(3)
sd = rgb.state_dict()
tensors, chunks, off = [], [], 0
def add(name, arr):
    global off
    arr = arr.astype(np.float32)
    tensors.append({'name': name, 'shape': list(arr.shape), 'offset': off}); chunks.append(arr.tobytes()); off += arr.nbytes
for module, conv, norm in keras_names():
    w = sd[module + '.conv.weight']
    if conv.endswith('_depthwise'):
        add(conv + '/depthwise_kernel', rng.normal(size=(3, 3, w.shape[0], 1)) / 3)
    else:  # scaled by the fan-in, so the activations neither vanish nor saturate
        add(conv + '/kernel', rng.normal(size=(w.shape[2], w.shape[3], w.shape[1], w.shape[0])) / np.sqrt(w[0].numel()))
    for k in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
        add(norm + '/' + k, rng.uniform(0.5, 1.5, size=(w.shape[0],)))
d = tempfile.mkdtemp(); prefix = os.path.join(d, 'w')
open(prefix + '.bin', 'wb').write(b''.join(chunks)); json.dump({'tensors': tensors}, open(prefix + '.json', 'w'))
n = load_imagenet(rgb, prefix)
grey = MobileNetV2Encoder(1); load_imagenet(grey, prefix)
from mobilenet import read_keras
k = read_keras(prefix)
checks = [
  float(abs(rgb.stem.conv.weight[5, 2, 0, 1] - k['Conv1/kernel'][0, 1, 2, 5])),
  float(abs(rgb.blocks[3].depthwise.conv.weight[7, 0, 2, 1] - k['block_3_depthwise/depthwise_kernel'][2, 1, 7, 0])),
  float(abs(rgb.blocks[16].project.conv.weight[300, 900, 0, 0] - k['block_16_project/kernel'][0, 0, 900, 300])),
  float(abs(rgb.last.bn.running_var[1000] - k['Conv_1_bn/moving_variance'][1000])),
  float(abs(rgb.blocks[0].depthwise.bn.bias[3] - k['expanded_conv_depthwise_BN/beta'][3])),
]
x = torch.rand(1, 1, 64, 64)
rgb.eval(); grey.eval()
with torch.no_grad():
    a, b = rgb(x.expand(1, 3, 64, 64))[2], grey(x)[2]
    same = float((a - b).abs().max() / (a.abs().max() + 1e-6))
print(n, max(checks), same)
`);
    const [n, mapped, same] = out.trim().split(' ').map(Number);
    expect(n).toBe(260);
    expect(mapped).toBe(0);
    expect(same).toBeLessThan(1e-4);
  });

  test('splits a large checkpoint into parts and joins them back exactly', () => {
    const out = py(
      `
import sys, torch
sys.path.insert(0, '.')
from weights import save_compact, load_state
s = {'w': torch.randn(300, 300), 'n': torch.tensor(5)}
parts = save_compact(s, sys.argv[1], max_bytes=50000)
b = load_state(sys.argv[1])
print(len(parts), float((b['w'] - s['w'].half().float()).abs().max()), int(b['n']))
`,
      [path.join(dir, 'big.pt')],
    );
    const [parts, err, n] = out.trim().split(' ').map(Number);
    expect(parts).toBeGreaterThan(1);
    expect(err).toBe(0);
    expect(n).toBe(5);
  });

  test('scale augmentation follows --zoom-range: a picture shrunk to half its size keeps a quarter of its lesion area', () => {
    const out = py(`
import sys, torch
sys.path.insert(0, '.')
from augment import augment
x = torch.rand(64, 1, 64, 64)
m = torch.zeros(64, 1, 64, 64); m[:, :, 16:48, 16:48] = 1
for z in ((0.5, 0.5), (1.0, 1.0)):
    g = torch.Generator().manual_seed(3)
    _, a = augment(x, m, g, z)
    print('%.3f' % float(a.sum() / m.sum()))
`);
    const [half, same] = out.trim().split('\n').map(Number);
    expect(half).toBeGreaterThan(0.2);
    expect(half).toBeLessThan(0.3);
    expect(same).toBeGreaterThan(0.9);
    expect(same).toBeLessThan(1.1);
    expect(() => train(['--arrays', path.join(dir, 'packed.pt.gz'), '--zoom-range', '1.2'])).toThrow(/--zoom-range must be LO,HI/);
  });

  test('--val-zooms: each full-size epoch is also scored on val pictures at the other scales, and the checkpoint score is their mean', () => {
    const shrunk = py(`
import sys, numpy as np
sys.path.insert(0, '.')
from augment import zoom_images_and_masks
m = np.zeros((1, 64, 64), np.uint8); m[:, 16:48, 16:48] = 1
_, z = zoom_images_and_masks(m * 200.0, m, 0.5)
print('%.3f' % (z.sum() / m.sum()))
`);
    expect(Number(shrunk)).toBeCloseTo(0.25, 2);

    const run = path.join(dir, 'zooms');
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', run, '--epochs', '2', '--val-zooms', '0.5,1']);
    expect(log).toMatch(/epoch {3}2 .*dice\+auc by zoom \{"0\.5": [\d.]+, "1": [\d.]+\}/);
    const history = JSON.parse(fs.readFileSync(path.join(run, 'history.json'), 'utf8')) as { score_by_zoom: Record<string, number> }[];
    const best = JSON.parse(fs.readFileSync(path.join(run, 'best.json'), 'utf8')) as { score: number; epoch: number; score_by_zoom: Record<string, number> };
    expect(Object.keys(best.score_by_zoom).sort()).toEqual(['0.5', '1']);
    expect(best.score).toBeCloseTo((best.score_by_zoom['0.5'] + best.score_by_zoom['1']) / 2, 3);
    const means = history.map((e) => (e.score_by_zoom['0.5'] + e.score_by_zoom['1']) / 2);
    expect(best.epoch).toBe(means.indexOf(Math.max(...means)) + 1);
    expect(() => train(['--arrays', path.join(dir, 'packed.pt.gz'), '--out', run, '--val-zooms', '0.75,1.25'])).toThrow(/--val-zooms must be positive scales that include 1/);
  }, 120_000);

  test('--select-normal-weight: the checkpoint score pays for normal val images with a false outline', () => {
    const counted = py(`
import sys, numpy as np
sys.path.insert(0, '.')
from train import normal_outlined
prob = np.zeros((4, 8, 8), np.float32); prob[0, 2, 2] = 0.45; prob[1, 3, 3] = 0.35; prob[2, 1, 1] = 0.9
print(normal_outlined(prob, np.array([0, 0, 1, 0])))
`);
    expect(Number(counted)).toBeCloseTo(1 / 3, 6); // only the first normal image has a pixel above 0.4; the lesion image is not counted

    const run = path.join(dir, 'select-normal');
    const weight = 0.5;
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', run, '--epochs', '3', '--val-zooms', '0.5,1', '--select-normal-weight', String(weight)]);
    expect(log).toMatch(/epoch {3}3 .*normal outlined [\d.]+ /);
    type Epoch = { score_by_zoom: Record<string, number>; normal_outlined: number };
    const history = JSON.parse(fs.readFileSync(path.join(run, 'history.json'), 'utf8')) as Epoch[];
    const best = JSON.parse(fs.readFileSync(path.join(run, 'best.json'), 'utf8')) as Epoch & { score: number; epoch: number };
    const scoreOf = (e: Epoch) => (e.score_by_zoom['0.5'] + e.score_by_zoom['1']) / 2 - weight * e.normal_outlined;
    expect(best.score).toBeCloseTo(scoreOf(best), 3);
    const scores = history.map(scoreOf);
    expect(best.epoch).toBe(scores.indexOf(Math.max(...scores)) + 1);
  }, 120_000);

  test('head refit (training/refit_head.py): the averaged heads as one linear map, and back into each network, change no output', () => {
    // a changed joint head written back must give the exported ensemble (members averaged, flip TTA) exactly that map
    const out = py(`
import sys, numpy as np, torch
sys.path.insert(0, '.')
from model import AttentionUNet
from train import Ensemble, FlipTTA
from refit_head import current_head, split_heads, pooled
torch.manual_seed(0)
nets = [AttentionUNet(4).eval(), AttentionUNet(4).eval()]
states = [n.state_dict() for n in nets]
x = torch.rand(3, 1, 32, 32)
f = np.concatenate([pooled(n, x, True) for n in nets], axis=1)
a, c = current_head(states)
with torch.no_grad():
    before = FlipTTA(Ensemble(nets))(x)[1].numpy()
a2, c2 = a * 20 + 0.05, c - 0.3
for n, s in zip(nets, split_heads(a2, c2, states)):
    n.load_state_dict(s)
with torch.no_grad():
    after = FlipTTA(Ensemble(nets))(x)[1].numpy()
print('%.2e %.2e %.2e' % (np.abs(before - (f @ a + c)).max(), np.abs(after - (f @ a2 + c2)).max(), np.abs(after - before).max()))
`);
    const [same, moved, change] = out.trim().split(' ').map(Number);
    expect(same).toBeLessThan(1e-5);
    expect(moved).toBeLessThan(1e-4 * change);
  });

  test('weight soup (training/soup.py): a weighted mean of matching layers, integer buffers from the first network', () => {
    const out = py(`
import sys, torch
sys.path.insert(0, '.')
from model import AttentionUNet
from soup import soup
torch.manual_seed(0)
a, b = AttentionUNet(4).state_dict(), AttentionUNet(4).state_dict()
b['enc.0.0.weight'] += 1.0
s = soup([a, b], [1, 3])
k = 'enc.0.0.weight'
nbt = [n for n in a if n.endswith('num_batches_tracked')][0]
b[nbt] = torch.tensor(7)
s2 = soup([a, b], [1, 3])
try:
    soup([a, {k: a[k]}], [1, 1]); err = 'none'
except ValueError as e:
    err = 'layers' if 'same layers' in str(e) else str(e)
print('%.2e %.2e %d %s' % ((s[k] - (0.25 * a[k] + 0.75 * b[k])).abs().max(), (soup([a], [2])[k] - a[k]).abs().max(), int(s2[nbt]), err))
`);
    const [mix, self, nbt, err] = out.trim().split(' ');
    expect(Number(mix)).toBeLessThan(1e-6);
    expect(Number(self)).toBe(0);
    expect(Number(nbt)).toBe(0);
    expect(err).toBe('layers');
  });

  test('lesion descriptors (training/descriptors.py): shape, orientation and posterior signs, off without a lesion; the fusion leaves the mask alone', () => {
    const out = py(`
import sys, json, math, numpy as np, torch
sys.path.insert(0, '.')
from descriptors import NAMES, lesion_descriptors, DescriptorFusion
h = w = 128
yy, xx = np.mgrid[0:h, 0:w]
ang, rad = np.arctan2(yy - 50, xx - 64), np.hypot(yy - 50, xx - 64)
shapes = {'circle': rad <= 15, 'wide': (yy - 50) ** 2 / 10 ** 2 + (xx - 64) ** 2 / 30 ** 2 <= 1,
          'tall': (yy - 50) ** 2 / 30 ** 2 + (xx - 64) ** 2 / 10 ** 2 <= 1,
          'star': rad < 15 + 6 * np.sin(8 * ang), 'none': np.zeros((h, w), bool)}
m = torch.tensor(np.stack(list(shapes.values())).astype(np.float32))[:, None]
x = 0.5 * torch.ones_like(m) - 0.3 * m
x_shadow = x.clone()
x_shadow[0, 0, 66:80, 50:79] = 0.1  # darker just below the circle (posterior shadowing)
p = 0.05 + 0.9 * m
f, g = lesion_descriptors(torch.cat([x, x_shadow[:1]]), torch.cat([p, p[:1]]), 0.45)
d = {k: dict(zip(NAMES, map(float, f[i]))) for i, k in enumerate(list(shapes) + ['shadow'])}
class Net(torch.nn.Module):  # a disc as mask logits, fixed class logits
    def forward(self, x):
        return 8 * (m[:1].expand(len(x), -1, -1, -1) - 0.5) + 0 * x, torch.tensor([[0.3, 0.1, -0.2]]).expand(len(x), 3)
net = Net()
params = {'threshold': 0.45, 'mean': [0.0] * len(NAMES), 'std': [1.0] * len(NAMES), 'coef': [0.1 * (i + 1) for i in range(len(NAMES))],
          'intercept': 0.2, 'weight': 1.5}
fused = DescriptorFusion(net, params).eval()
xi = torch.rand(2, 1, h, w)
with torch.no_grad():
    (m0, c0), (m1, c1) = net(xi), fused(xi)
    s = fused.log_odds(xi, m0)
print(json.dumps({'d': d, 'gate': g.tolist(), 'mask_same': float((m0 - m1).abs().max()),
                  'class_moved': (c1 - c0).tolist(), 'expected': [[0, -0.75 * v, 0.75 * v] for v in s.tolist()]}))
`);
    const r = JSON.parse(out);
    expect(r.gate).toEqual([1, 1, 1, 1, 0, 1]);
    expect(r.d.circle.elongation).toBeGreaterThan(0.95);
    expect(r.d.wide.elongation).toBeLessThan(0.4);
    expect(Math.abs(r.d.circle.log_height_width)).toBeLessThan(0.05);
    expect(r.d.tall.log_height_width).toBeGreaterThan(0.8);
    expect(r.d.wide.log_height_width).toBeLessThan(-0.8);
    expect(r.d.star.log_compactness).toBeGreaterThan(r.d.circle.log_compactness + 0.3);
    expect(r.d.star.fill).toBeLessThan(r.d.circle.fill - 0.05);
    expect(r.d.circle.contrast).toBeLessThan(-1);
    expect(r.d.shadow.posterior).toBeLessThan(r.d.circle.posterior - 0.5);
    expect(Object.values(r.d.none).map((v) => Math.abs(v as number))).toEqual(new Array(12).fill(0));
    expect(r.mask_same).toBe(0);
    expect(Math.abs(r.expected[0][2])).toBeGreaterThan(0.1);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) expect(r.class_moved[i][j]).toBeCloseTo(r.expected[i][j], 4);
  });

  test('descriptor head fit (training/descriptor_head.py): regression on train, weight chosen on val, and the fused model separates what the class head did not', () => {
    // a stand-in network that outlines every dark disc and has no opinion on the class: the descriptors
    // (area, echo) must carry the whole benign/malignant decision, and the search must find that on val
    const out = py(`
import sys, json, numpy as np, torch
sys.path.insert(0, '.')
from descriptor_head import fit_head
from descriptors import DescriptorFusion
from metrics import auc
from train import load_packed
data, _ = load_packed(sys.argv[1])
class Net(torch.nn.Module):
    def forward(self, x):
        return 60 * (0.3 - x), torch.zeros(len(x), 3)
torch.manual_seed(0)
params, report = fit_head(Net(), data, 0.5, 1, (0.9, 1.1), [1.0], 5, lambda *a: None)
fused = DescriptorFusion(Net(), params).eval()
x, _, y, _ = data['val']
with torch.no_grad():
    p = torch.softmax(fused(torch.from_numpy(x[:, None] / 255.0).float())[1], 1)[:, 2].numpy()
rows = {r['w']: r['mean_auc_malignant'] for r in report['rows']}
# a network that outlines the same disc in every frame: its shape descriptors do not vary, and their
# spread is floored so that float noise in another runtime is not blown up into the log-odds
disc = torch.zeros(1, 1, 32, 32)
disc[..., 10:20, 10:20] = 1
class Fixed(torch.nn.Module):
    def forward(self, x):
        return 20 * (disc.expand(len(x), -1, -1, -1) - 0.5), torch.zeros(len(x), 3)
fixed, _ = fit_head(Fixed(), data, 0.5, 1, (1.0, 1.0), [1.0], 5, lambda *a: None)
print(json.dumps({'w': params['weight'], 'auc_w0': rows[0.0], 'auc_chosen': rows[params['weight']],
                  'fused_auc_mvb': auc(y[y > 0] == 2, p[y > 0]), 'train_auc': report['train_auc_descriptors'],
                  'fixed_min_std': min(fixed['std'])}))
`, [path.join(dir, 'packed.pt.gz')]);
    const r = JSON.parse(out);
    expect(r.w).toBeGreaterThan(0);
    expect(r.auc_w0).toBeLessThan(0.75);
    expect(r.auc_chosen).toBeGreaterThan(0.95);
    expect(r.fused_auc_mvb).toBeGreaterThan(0.95);
    expect(r.train_auc).toBeGreaterThan(0.95);
    expect(r.fixed_min_std).toBeGreaterThanOrEqual(1e-3);
  });

  test('npm run train end to end on a tiny BUSI-layout folder: trains, fits the descriptor head, scores test, exports a graph onnxruntime-node runs as PyTorch did', async () => {
    // the recipe's own path (train.py with --descriptor-head fit --class-temperature fit, as package.json runs it) on 48 PNGs;
    // on a base-4 Attention U-Net for speed (package.json's --arch mobilenetv2 trains and exports in the mobilenetv2 test below)
    const busi = path.join(dir, 'busi');
    py(
      `
import os, sys, numpy as np
from PIL import Image
root = sys.argv[1]
rng = np.random.default_rng(3)
yy, xx = np.mgrid[0:40, 0:48]
rows = ['file,class,split,masks']
for c in ('normal', 'benign', 'malignant'):
    os.makedirs(os.path.join(root, c), exist_ok=True)
    for k in range(16):
        img = rng.uniform(90, 170, (40, 48))
        m = np.zeros((40, 48), bool)
        if c != 'normal':
            ry, rx = (6, 9) if c == 'benign' else (10, 7)
            cy, cx = rng.integers(12, 28), rng.integers(12, 36)
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            img[m] = 40 if c == 'benign' else 70
            if c == 'malignant':
                img[min(cy + ry, 39):, max(cx - rx, 0):cx + rx] *= 0.5  # posterior shadow
        name = '%s (%d)' % (c, k + 1)
        Image.fromarray(img.astype(np.uint8)).save(os.path.join(root, c, name + '.png'))
        Image.fromarray((m * 255).astype(np.uint8)).save(os.path.join(root, c, name + '_mask.png'))
        split = 'train' if k < 10 else ('val' if k < 13 else 'test')
        rows.append('%s/%s.png,%s,%s,%s_mask.png' % (c, name, c, split, name))
open(os.path.join(root, 'split.csv'), 'w').write('\\n'.join(rows) + '\\n')
`,
      [busi],
    );
    const run = path.join(dir, 'recipe-run');
    const modelDir = path.join(dir, 'recipe-model');
    const common = ['--data', busi, '--cache-dir', path.join(dir, 'cache'), '--size', '32', '--base', '4', '--out', run, '--model-dir', modelDir];
    const log = train([...common, '--epochs', '20', '--lr', '0.01', '--descriptor-head', 'fit', '--class-temperature', 'fit', '--model-version', 'recipe-test']);
    expect(log).toMatch(/CV balanced log-loss by lambda/);
    expect(log).toMatch(/class temperature [\d.]+ \(fit\): val log-loss/);
    expect(log).toMatch(/test \(original resolution\)/);
    const meta = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
    expect(meta.training.descriptor_head.names).toHaveLength(12);
    expect(meta.training.class_temperature).toBeGreaterThanOrEqual(0.5);
    expect(meta.metrics.test.dice).toBeGreaterThan(0.5); // the discs are outlined, so the descriptors describe them
    const fusion = JSON.parse(fs.readFileSync(path.join(run, 'fusion.json'), 'utf8'));
    expect(fusion.weight).toBe(meta.training.descriptor_head.weight);
    expect(fusion.coef).toHaveLength(12);
    expect((await onnxParity(modelDir)).maxDiff).toBeLessThanOrEqual(1e-4);
    // the P(normal) bound: chosen on val and written to model.json only when there is one
    const bound = /val P\(normal\) bound: (\S+)/.exec(log);
    expect(bound).not.toBeNull();
    expect(meta.outputs.mask.suppressWhenNormalAbove).toBe(bound![1] === 'None' ? undefined : Number(bound![1]));
    // and the test scorer follows it: a bound below every image's P(normal) leaves no outline
    const gated = py(`
import json, sys
sys.path.insert(0, '.')
from train import evaluate_full, load_members
meta = json.load(open(sys.argv[2]))
spec = {k: v for k, v in meta['input'].items() if k != 'name'}
net = load_members([sys.argv[3]])
a, b = (evaluate_full(net, sys.argv[1], spec, 0.5, 'test', nb) for nb in (None, 1e-9))
print(a['dice'], b['dice'], b['normal_with_false_lesion'])
`, [busi, path.join(modelDir, 'model.json'), path.join(run, 'best.pt')]);
    const [plainDice, gatedDice, gatedNormal] = gated.trim().split(' ').map(Number);
    expect(plainDice).toBeGreaterThan(0.5);
    expect(gatedDice).toBe(0);
    expect(gatedNormal).toBe(0);
    // the class head alone is already perfect here, so val may rightly choose w = 0: export again with
    // that regression at weight 1 (the --descriptor-head FILE path) so the branch's numbers count too
    const forced = path.join(dir, 'fusion-w1.json');
    fs.writeFileSync(forced, JSON.stringify({ ...fusion, weight: 1 }));
    train([...common, '--export-only', '--descriptor-head', forced, '--model-version', 'recipe-test-w1']);
    expect(JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8')).training.descriptor_head.weight).toBe(1);
    const parity = await onnxParity(modelDir);
    expect(parity.maxDiff).toBeLessThanOrEqual(1e-4);
    expect(Math.max(...parity.descriptorLogOdds!.map(Math.abs))).toBeGreaterThan(0.1);
    // --class-temperature (rule 7): the same graph with its class logits halved, in ONNX as in PyTorch,
    // recorded in model.json, and rebuilt by from_onnx.py (which checks it against the reference outputs)
    const tempered = path.join(dir, 'tempered-model');
    const tLog = train([...common.map((a) => (a === modelDir ? tempered : a)), '--export-only', '--descriptor-head', forced, '--class-temperature', '2', '--model-version', 'recipe-test-t2']);
    expect(tLog).toMatch(/class temperature 2 \(2\): val log-loss/);
    expect(JSON.parse(fs.readFileSync(path.join(tempered, 'model.json'), 'utf8')).training.class_temperature).toBe(2);
    expect((await onnxParity(tempered)).maxDiff).toBeLessThanOrEqual(1e-4);
    const [c1, c2] = [modelDir, tempered].map((d) => f32(JSON.parse(fs.readFileSync(path.join(d, 'reference-outputs.json'), 'utf8')).class_logits));
    expect(Math.max(...c1.map((v, i) => Math.abs(v / 2 - c2[i])))).toBeLessThanOrEqual(1e-5);
    expect(Math.max(...c1.map(Math.abs))).toBeGreaterThan(0.1);
    const rebuiltT = execFileSync(PY, [path.join(TRAINING, 'from_onnx.py'), '--model', path.join(tempered, 'model.json'), '--out', path.join(dir, 'rebuilt-t')], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    expect(rebuiltT).toMatch(/largest difference from the reference outputs/);

    // training/from_onnx.py: the exported graph back into PyTorch weights (a fresh checkout has model/
    // but no training/runs/), BatchNorm recalibrated on the train images for training on; exporting
    // those weights again gives the same graph outputs
    const fromOnnx = (out: string, extra: string[]) =>
      execFileSync(PY, [path.join(TRAINING, 'from_onnx.py'), '--model', path.join(modelDir, 'model.json'), '--out', out, '--calibrate', '--data', busi, '--cache-dir', path.join(dir, 'cache'), ...extra], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    // by default from augmented batches, as training sees them; the script itself fails if the outputs moved
    expect(fromOnnx(path.join(dir, 'rebuilt-aug'), [])).toMatch(/BatchNorm statistics from 30 train images \(60 views, augmented\)/);
    const rebuilt = path.join(dir, 'rebuilt');
    const log2 = fromOnnx(rebuilt, ['--calibrate-copies', '0']);
    expect(log2).toMatch(/rebuilt 1 network\(s\) with the descriptor regression/);
    expect(log2).toMatch(/BatchNorm statistics from 30 train images \(30 views\)/);
    const again = path.join(dir, 'again-model');
    train([...common.map((a) => (a === modelDir ? again : a)), '--export-only', '--checkpoints', path.join(rebuilt, 'member0.pt'), '--descriptor-head', path.join(rebuilt, 'fusion.json'), '--model-version', 'again']);
    const [r1, r2] = [modelDir, again].map((d) => JSON.parse(fs.readFileSync(path.join(d, 'reference-outputs.json'), 'utf8')));
    for (const k of ['mask_logits', 'class_logits']) {
      const [a, b] = [f32(r1[k]), f32(r2[k])];
      expect(b.length).toBe(a.length);
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeLessThanOrEqual(1e-4);
    }
    // calibrated on the images as they are: a train-mode pass over all of them at once (batch
    // statistics = the running ones) gives the eval-mode outputs, so training starts where the network is
    const modes = py(`
import sys, numpy as np, torch
sys.path.insert(0, '.')
from data import load_arrays
from train import load_members
x = torch.from_numpy(load_arrays(sys.argv[1], 32, sys.argv[2])['train'][0][:, None] / 255.0).float()
net = load_members([sys.argv[3]])
with torch.no_grad():
    e = net(x)[0]
    net.train()
    t = net(x)[0]
print('%.2e %.2e' % (float((e - t).abs().max()), float(e.std())))
`, [busi, path.join(dir, 'cache'), path.join(rebuilt, 'member0.pt')]);
    const [modeDiff, spread] = modes.trim().split(' ').map(Number);
    expect(spread).toBeGreaterThan(0.1);
    expect(modeDiff).toBeLessThan(1e-3 * spread);

    // an ensemble with a member trained at another input size (weights.pt@N, training/resized.py; how
    // 1.5.0 averages a 128² network with a 256² one): best.pt twice, once seen at 16 x 16 inside the
    // 32 x 32 graph (its weights nudged, or the export would share the two copies' equal tensors).
    // onnxruntime-node runs it as PyTorch did, and from_onnx.py takes it apart again (it exits 1 if
    // the rebuilt graph, Resized member included, does not reproduce the outputs)
    const mixedDir = path.join(dir, 'mixed-model');
    const best = path.join(run, 'best.pt');
    const nudged = path.join(dir, 'nudged.pt');
    py(
      `
import sys, torch
sys.path.insert(0, '.')
from weights import load_state
g = torch.Generator().manual_seed(1)
s = load_state(sys.argv[1])
torch.save({k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() and 'running_' not in k else v for k, v in s.items()}, sys.argv[2])
`,
      [best, nudged],
    );
    train([...common.map((a) => (a === modelDir ? mixedDir : a)), '--export-only', '--checkpoints', `${best},${nudged}@16`, '--model-version', 'mixed', '--tta', 'off', '--low-agreement-above', '0.05']);
    const mixedSpec = JSON.parse(fs.readFileSync(path.join(mixedDir, 'model.json'), 'utf8'));
    expect(mixedSpec.training.ensemble[1]).toMatch(/nudged\.pt@16$/);
    expect(mixedSpec.outputs.spread).toEqual({ name: 'class_spread', label: 'malignant', lowAgreementAbove: 0.05 });
    const mixedParity = await onnxParity(mixedDir);
    expect(mixedParity.maxDiff).toBeLessThanOrEqual(1e-4);
    // class_spread is the two networks' P(malignant) standard deviation, computed apart from the graph
    const apart = py(
      `
import sys, json, numpy as np, torch
sys.path.insert(0, '.')
from reference import pattern
from train import load_members
x = torch.from_numpy(pattern(3, 32, 32))
pm = [torch.softmax(load_members([p])(x)[1], 1)[:, 2].detach().numpy() for p in sys.argv[1:3]]
print(json.dumps(np.std(np.stack(pm), 0).tolist()))
`,
      [best, `${nudged}@16`],
    );
    const expected = JSON.parse(apart) as number[];
    expect(Math.max(...expected)).toBeGreaterThan(1e-3);
    mixedParity.spread!.forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThan(1e-5));

    // rule 30: with --most-suspicious-when-disagreeing, above the cut the class logits are the
    // network's with the higher P(malignant); at or below it, the average's
    const cut = (Math.min(...expected) + Math.max(...expected)) / 2;
    const ruleDir = path.join(dir, 'rule-model');
    train([...common.map((a) => (a === modelDir ? ruleDir : a)), '--export-only', '--checkpoints', `${best},${nudged}@16`, '--model-version', 'rule', '--tta', 'off', '--low-agreement-above', String(cut), '--most-suspicious-when-disagreeing']);
    expect(JSON.parse(fs.readFileSync(path.join(ruleDir, 'model.json'), 'utf8')).outputs.spread.classFromMostSuspiciousNetwork).toBe(true);
    expect((await onnxParity(ruleDir)).maxDiff).toBeLessThanOrEqual(1e-4);
    const rule = JSON.parse(
      py(
        `
import sys, json, torch
sys.path.insert(0, '.')
from reference import pattern
from train import load_members
x = torch.from_numpy(pattern(3, 32, 32))
z = [load_members([p])(x)[1].detach() for p in sys.argv[1:3]]
print(json.dumps({"each": [t.tolist() for t in z], "mean": ((z[0] + z[1]) / 2).tolist()}))
`,
        [best, `${nudged}@16`],
      ),
    ) as { each: number[][][]; mean: number[][] };
    const got = f32(JSON.parse(fs.readFileSync(path.join(ruleDir, 'reference-outputs.json'), 'utf8')).class_logits);
    const pm = (l: number[]) => Math.exp(l[2]) / l.reduce((a, v) => a + Math.exp(v), 0);
    let flagged = 0;
    expected.forEach((spread, i) => {
      const want = spread > cut ? rule.each[pm(rule.each[0][i]) >= pm(rule.each[1][i]) ? 0 : 1][i] : rule.mean[i];
      flagged += spread > cut ? 1 : 0;
      want.forEach((v, k) => expect(Math.abs(got[i * 3 + k] - v)).toBeLessThan(1e-4));
    });
    expect(flagged).toBeGreaterThan(0);
    expect(flagged).toBeLessThan(expected.length);
    const mixedLog = execFileSync(PY, [path.join(TRAINING, 'from_onnx.py'), '--model', path.join(mixedDir, 'model.json'), '--out', path.join(dir, 'mixed-rebuilt')], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    expect(mixedLog).toMatch(/rebuilt 2 network\(s\)/);
    expect(mixedLog).toMatch(/wrote member0\.pt, member1\.pt@16 to/);
  }, 300_000);

  test('--arch mobilenetv2: the MobileNetV2-encoder network trains, sits beside an Attention U-Net in one graph that onnxruntime-node runs as PyTorch did, and from_onnx.py takes the two apart again', async () => {
    const run = path.join(dir, 'mobile');
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--batch', '8', '--train-only', '--out', run, '--epochs', '1', '--arch', 'mobilenetv2', '--pretrained', 'none', '--encoder-lr', '0.3']);
    expect(log).toMatch(/Attention U-Net on a MobileNetV2 encoder \(encoder lr x 0\.3\), 3251516 parameters/);
    expect(log).not.toMatch(/ImageNet tensors/);
    // the ImageNet weights are made by hand (training/pretrained/); without them the run says so and how
    expect(() => train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--train-only', '--out', path.join(dir, 'mobile-nopre'), '--epochs', '1', '--arch', 'mobilenetv2', '--pretrained', path.join(dir, 'absent')])).toThrow(/no ImageNet weights at .*extract_nsfwjs\.js/);
    const unet = path.join(dir, 'unet-for-mobile');
    train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', unet, '--epochs', '1']);
    const modelDir = path.join(dir, 'mobile-model');
    const busi = path.join(dir, 'busi');
    // the export scores test, so it reads the BUSI-layout folder the end-to-end test above writes
    expect(fs.existsSync(path.join(busi, 'split.csv'))).toBe(true);
    train(['--data', busi, '--cache-dir', path.join(dir, 'cache'), '--size', '32', '--out', run, '--model-dir', modelDir, '--export-only', '--checkpoints', `${path.join(run, 'best.pt')},${path.join(unet, 'best.pt')}`, '--model-version', 'mobile']);
    expect((await onnxParity(modelDir)).maxDiff).toBeLessThanOrEqual(1e-4);
    const rebuilt = execFileSync(PY, [path.join(TRAINING, 'from_onnx.py'), '--model', path.join(modelDir, 'model.json'), '--out', path.join(dir, 'mobile-rebuilt')], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    expect(rebuilt).toMatch(/rebuilt 2 network\(s\)/);
    const kinds = py(
      `
import sys
sys.path.insert(0, '.')
from train import load_members
e = load_members([sys.argv[1] + '/member0.pt', sys.argv[1] + '/member1.pt'])
print(' '.join(type(m).__name__ for m in e.members))
`,
      [path.join(dir, 'mobile-rebuilt')],
    );
    expect(kinds.trim()).toBe('MobileAttentionUNet AttentionUNet');
  }, 240_000);

  test('training/from_onnx.py rebuilds the shipped networks from model/ exactly (and a bare single network), and refuses a graph that does not match its reference outputs', () => {
    const out = path.join(dir, 'shipped');
    const script = path.join(TRAINING, 'from_onnx.py');
    const env = { ...process.env, OMP_NUM_THREADS: '1' };
    const log = execFileSync(PY, [script, '--out', out], { encoding: 'utf8', env });
    const meta = JSON.parse(fs.readFileSync(path.join(ROOT, 'model', 'model.json'), 'utf8'));
    const n = (meta.training.ensemble ?? [null]).length;
    expect(log).toMatch(new RegExp(`rebuilt ${n} network`));
    for (let k = 0; k < n; k++) expect(fs.existsSync(path.join(out, `member${k}.pt`))).toBe(true);
    if (meta.training.descriptor_head?.weight) {
      const fusion = JSON.parse(fs.readFileSync(path.join(out, 'fusion.json'), 'utf8'));
      expect(fusion.weight).toBe(meta.training.descriptor_head.weight);
      expect(fusion.coef).toHaveLength(meta.training.descriptor_head.names.length);
    }
    // a bare single network (no ensemble, TTA or descriptor branch: the untrained test fixture)
    const bare = execFileSync(PY, [script, '--model', path.join(ROOT, 'test', 'fixtures', 'tiny-model', 'model.json'), '--out', path.join(dir, 'bare')], { encoding: 'utf8', env });
    expect(bare).toMatch(/rebuilt 1 network\(s\); largest difference/);
    expect(fs.existsSync(path.join(dir, 'bare', 'member0.pt'))).toBe(true);
    // the same graph against reference outputs with one mask logit moved by 0.01
    const ref = JSON.parse(fs.readFileSync(path.join(ROOT, 'model', 'reference-outputs.json'), 'utf8'));
    const buf = Buffer.from(ref.mask_logits, 'base64');
    buf.writeFloatLE(buf.readFloatLE(400) + 0.01, 400);
    const bad = path.join(dir, 'bad-reference.json');
    fs.writeFileSync(bad, JSON.stringify({ ...ref, mask_logits: buf.toString('base64') }));
    let err = '';
    try {
      execFileSync(PY, [script, '--out', path.join(dir, 'not-written'), '--reference', bad], { encoding: 'utf8', env, stdio: 'pipe' });
    } catch (e) {
      err = String((e as { stderr: string }).stderr);
    }
    expect(err).toMatch(/do not reproduce attention-unet-busi\.onnx/);
    expect(fs.existsSync(path.join(dir, 'not-written'))).toBe(false);
  }, 60_000);

  test("cpu_recipe.py records each member's whole run (trained.json), not only its time to the best epoch", () => {
    const member = fs.mkdtempSync(path.join(dir, 'member-'));
    fs.writeFileSync(path.join(member, 'best.json'), JSON.stringify({ epoch: 43, train_seconds: 1499 }));
    fs.writeFileSync(path.join(member, 'trained.json'), JSON.stringify({ epochs: 84, train_seconds: 2848 }));
    const facts = py(
      `
import json, sys
from cpu_recipe import member_facts
print(json.dumps(member_facts(sys.argv[1]), sort_keys=True))
`,
      [member],
    );
    expect(JSON.parse(facts)).toEqual({ best_epoch: 43, best_train_seconds: 1499, epochs: 84, train_seconds: 2848 });
  });

  test('learning rate: warm-up, then cosine down to zero', () => {
    const out = py(`
import sys
sys.path.insert(0, '.')
from train import lr_factor
print(' '.join('%.4f' % lr_factor(p) for p in (0, 0.025, 0.05, 0.525, 1.0)))
`);
    expect(out.trim().split(' ').map(Number)).toEqual([0.04, 0.52, 1, 0.5, 0]);
  });

  test('the P(normal) bound (training/normal_bound.py): the lowest on the grid that costs no val lesion its outline, and only if it clears a normal one', () => {
    const out = py(`
import sys
sys.path.insert(0, '.')
from normal_bound import choose_normal_bound
# (outlined, P(normal), lesion) per val image
cases = [
    [(1, 0.95, 0), (1, 0.75, 0), (1, 0.65, 1), (1, 0.2, 1), (0, 0.99, 1)],  # 0.7: 0.6 would cost the 0.65 lesion; the unoutlined one costs nothing
    [(1, 0.95, 1), (1, 0.99, 0)],  # even 0.9 costs a lesion: none
    [(1, 0.2, 0), (1, 0.1, 1)],  # 0.3 costs nothing but clears no normal image: none
    [(0, 0.95, 0), (1, 0.5, 1)],  # the only confident normal image has no outline to clear: none
]
print(' '.join(str(choose_normal_bound(*zip(*c))) for c in cases))
`);
    expect(out.trim()).toBe('0.7 None None None');
  });

  test('the class temperature (training/temperature.py): above 1 for overconfident scores, below 1 for timid ones, the logits divided by it', () => {
    const out = py(`
import sys, numpy as np, torch
sys.path.insert(0, '.')
from temperature import Tempered, fit_temperature, log_loss, tempered
rng = np.random.default_rng(0)
labels = rng.integers(0, 3, 600)
right = rng.random(600) < 0.7  # the argmax is right 70 % of the time
pred = np.where(right, labels, (labels + 1) % 3)
def logits(margin):
    z = np.zeros((600, 3)); z[np.arange(600), pred] = margin; return z
over, timid = fit_temperature(logits(8.0), labels), fit_temperature(logits(0.3), labels)
net = Tempered(lambda x: (x, x * 3), 1.5)
m, c = net(torch.ones(1))
z = torch.tensor(logits(2.0))
same = float(np.abs(tempered(torch.softmax(z, 1).numpy(), 1.5) - torch.softmax(z / 1.5, 1).numpy()).max()) < 1e-9
print(over, timid, log_loss(logits(8.0), labels, over) < log_loss(logits(8.0), labels, 1), float(m), float(c), same)
`);
    const [over, timid, better, m, c, same] = out.trim().split(' ');
    expect(Number(over)).toBeGreaterThan(2); // P 0.999 for a 70 % argmax: the fit cools it down a lot
    expect(Number(timid)).toBeLessThan(1);
    expect([better, m, c, same]).toEqual(['True', '1.0', '2.0', 'True']); // same: the train.py shortcut gives the tempered net's probabilities
  });

  test('the zoom gate (training/zoom_gate.py): only frames the base outlines less than the area share move towards the zoom view', () => {
    const out = py(`
import sys, torch
sys.path.insert(0, '.')
from zoom_gate import gate_logits
base = torch.full((3, 1, 10, 10), -5.0)
base[1, 0, :2, :] = 5.0  # 20 % of the frame outlined
base[2, 0, 0, 0] = 5.0  # 1 % outlined
zoom = torch.full((3, 1, 10, 10), 3.0)
g = gate_logits(base, zoom, 0.3, 0.05, 0.5)
print(float(g[0, 0, 5, 5]), float(g[1, 0, 5, 5]), float(g[2, 0, 5, 5]), float(g[2, 0, 0, 0]))
`);
    expect(out.trim()).toBe('-1.0 -5.0 -1.0 4.0');
  });

  test('tta_search scores the share of normal val images with any pixel over the threshold (rule 5 reads it)', () => {
    const out = py(`
import sys
import numpy as np
sys.path.insert(0, '.')
from tta_search import score
labels = np.array([0, 0, 0, 0, 1, 2])  # four normal images, then a benign and a malignant one
logits = np.full((6, 8, 8), -6.0, dtype=np.float32)
logits[0, 0, 0] = 0.0  # P = 0.5: outlined at threshold 0.4, not at 0.6
logits[1, 2:4, 2:4] = 6.0  # a confident blob: outlined at both
logits[4:, 2:6, 2:6] = 6.0
masks = np.zeros((6, 8, 8)); masks[4:, 2:6, 2:6] = 1
cls = np.log(np.array([[.8, .1, .1]] * 4 + [[.1, .8, .1], [.1, .1, .8]]))
print(score(logits, cls, masks, labels, 0.4)["normal_outlined"], score(logits, cls, masks, labels, 0.6)["normal_outlined"])
`);
    expect(out.trim()).toBe('0.5 0.25');
  });

  test('--normal-penalty: the top 1 % lesion probability of the images without a lesion, blind to lesion images', () => {
    const out = py(`
import sys, torch
sys.path.insert(0, '.')
from train import normal_outline_loss
t = torch.zeros(3, 1, 20, 20); t[0, 0, 5:10, 5:10] = 1  # a lesion image, then two normal ones
logits = torch.full_like(t, -10.0); logits[1, 0, :2, :2] = 10.0  # normal image 1: a 4-pixel confident blob
logits[0] = 10.0  # the lesion image is all lesion: not the penalty's business
print('%.4f %.4f %.4f' % (float(normal_outline_loss(logits, t)), float(normal_outline_loss(logits[2:], t[2:])),
      float(normal_outline_loss(logits[:1], t[:1]))))
`);
    const [blob, clean, lesionOnly] = out.trim().split(' ').map(Number);
    expect(blob).toBeCloseTo(0.5, 3); // image 1: its top 4 pixels (1 % of 400) all ~1; image 2: ~0; mean 0.5
    expect(clean).toBeLessThan(1e-3);
    expect(lesionOnly).toBe(0);
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', path.join(dir, 'penalty'), '--epochs', '1', '--normal-penalty', '0.5']);
    expect(log).toMatch(/\+ 0\.5 x the top-1 % lesion probability of images without a lesion/);
    expect(log).toMatch(/epoch +1 /);
  }, 120_000);

  test('--class-detach-at: from that share of the schedule on, the class loss trains the class head and nothing else', () => {
    const out = py(`
import sys, torch, torch.nn.functional as F
sys.path.insert(0, '.')
from train import forward_for_loss
from model import AttentionUNet, MobileAttentionUNet
for net in (AttentionUNet(4), MobileAttentionUNet()):
    x = torch.rand(2, 1, 64, 64)
    for only in (False, True):
        net.zero_grad()
        ml, pooled = forward_for_loss(net, x, only)
        F.cross_entropy(net.cls(pooled), torch.tensor([1, 2])).backward()
        head = sum(float(p.grad.abs().sum()) for p in net.cls.parameters())
        rest = sum(float(p.grad.abs().sum()) for n, p in net.named_parameters() if not n.startswith('cls.') and p.grad is not None)
        print(int(head > 0), int(rest > 0), end=' ')
    net.eval()
    print(int(torch.allclose(net.cls(forward_for_loss(net, x, True)[1]), net(x)[1])))
`);
    // per network: the whole network learns from the class loss, then the head alone; the logits are the same either way
    expect(out.trim().split('\n')).toEqual(['1 1 1 0 1', '1 1 1 0 1']);
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', path.join(dir, 'detach'), '--epochs', '1', '--class-detach-at', '0.5']);
    expect(log).toMatch(/from 50% of the schedule on, the class loss trains the class head only/);
    expect(log).toMatch(/epoch +1 /);
  }, 120_000);

  test('--class-mixup: the class head sees two images\' pooled features blended, and the loss blends their labels alike', () => {
    const out = py(`
import sys, torch, torch.nn.functional as F
sys.path.insert(0, '.')
from train import class_loss
torch.manual_seed(0)
head = torch.nn.Linear(6, 3)
pooled = torch.randn(4, 6); y = torch.tensor([0, 1, 2, 2]); w = torch.tensor([2.0, 0.5, 1.0]); perm = torch.tensor([1, 0, 3, 2])
plain = float(class_loss(head, pooled, y, w))
same = float(class_loss(head, pooled, y, w, (1.0, perm)))
mixed = float(class_loss(head, pooled, y, w, (0.7, perm)))
blend = head(0.7 * pooled + 0.3 * pooled[perm])
ce = lambda t: F.cross_entropy(blend, t, weight=w, label_smoothing=0.05)
print('%.6f %.6f %.6f %.6f' % (plain, same, mixed, float(0.7 * ce(y) + 0.3 * ce(y[perm]))))
`);
    const [plain, same, mixed, byHand] = out.trim().split(' ').map(Number);
    expect(same).toBeCloseTo(plain, 6); // lam = 1: the plain loss
    expect(mixed).toBeCloseTo(byHand, 6);
    expect(Math.abs(mixed - plain)).toBeGreaterThan(1e-3);
    const log = train(['--arrays', path.join(dir, 'packed.pt.gz'), '--size', '32', '--base', '4', '--batch', '8', '--train-only', '--out', path.join(dir, 'mixup'), '--epochs', '1', '--class-mixup', '0.4']);
    expect(log).toMatch(/class head: manifold mixup of its pooled input, Beta\(0\.4, 0\.4\)/);
    expect(log).toMatch(/epoch +1 /);
  }, 120_000);

  test('--dice image: one soft Dice per lesion image, averaged, so a small lesion weighs as much as a large one', () => {
    // a batch of three: a large lesion predicted well, a small lesion missed, a normal image
    const out = py(`
import sys, torch
sys.path.insert(0, '.')
from train import soft_dice_loss
t = torch.zeros(3, 1, 32, 32); t[0, 0, :16, :16] = 1; t[1, 0, 20:22, 20:22] = 1
logits = torch.full_like(t, -8.0); logits[0] = torch.where(t[0] > 0, 8.0, -8.0)
one = lambda i: float(soft_dice_loss(logits[i:i + 1], t[i:i + 1]))
print('%.4f %.4f %.4f %.4f %.4f' % (float(soft_dice_loss(logits, t)), float(soft_dice_loss(logits, t, True)),
      (one(0) + one(1)) / 2, float(soft_dice_loss(logits[2:], t[2:], True)), float(soft_dice_loss(logits[2:], t[2:]))))
`);
    const [batch, perImage, meanOfTwo, normalOnly, normalBatch] = out.trim().split(' ').map(Number);
    expect(perImage).toBeCloseTo(meanOfTwo, 4); // the normal image is left out of the mean
    expect(perImage).toBeGreaterThan(0.35); // the missed small lesion costs most of its half of the loss
    expect(batch).toBeLessThan(0.3); // over the batch, the large lesion's pixels drown it out
    expect(normalOnly).toBeCloseTo(normalBatch, 4); // no lesion in the batch: the whole-batch Dice
  });
});
