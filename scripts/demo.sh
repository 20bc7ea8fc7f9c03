#!/usr/bin/env bash
# The whole DiffusionPrint pipeline end to end on the embedded default: tiny random-weight
# diffusers pipelines, the bundled photographs, CPU, no download. Outputs go to demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
# DEMO_VENV=PATH runs in an environment that already has the toolkit (no setup.sh, no install).
if [ -n "${DEMO_VENV:-}" ]; then
    . "$DEMO_VENV/bin/activate"
else
    bash scripts/setup.sh
    . .venv/bin/activate
fi
OUT=${DEMO_OUT:-demo-out}
rm -rf "$OUT"
set -x

# The bundled photographs, split by source photograph (hubble_deep_field_crop is a crop of
# hubble_deep_field) so that the probe's images are not the training images.
python -c "
import shutil
from pathlib import Path
from dpgen.sources import bundled_photos_dir
held_out = ('hubble', 'retina', 'ihc')
for p in sorted(bundled_photos_dir().iterdir()):
    if p.suffix.lower() in ('.jpg', '.png'):
        part = 'eval' if p.stem.startswith(held_out) else 'train'
        (Path('$OUT') / f'photos-{part}').mkdir(parents=True, exist_ok=True)
        shutil.copy(p, Path('$OUT') / f'photos-{part}')
"

# 1. dpgen: how much GPU memory the real generators would need (counted from their published
#    configs, no download); then inpaint 4 real photos with each tiny generator, plus 4 generated
#    images per generator (made by its text-to-image pipeline), one generator loaded at a time;
#    cut the paired patches, check the counts, draw a contact sheet of them.
dpgen plan --generators sd21,sdxl,flux --gpu-memory 24
dpgen build --generators tiny-sd21,tiny-sdxl,tiny-flux --real "$OUT/photos-train" \
    --num-images 4 --out "$OUT/build"
dpgen info "$OUT/build"
dpgen show "$OUT/build" --out "$OUT/build-sheet.png"

# 2. dptrain: a short MoCo-style pretraining run; weights + config.json + model card.
accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
    -m dptrain --preset tiny --data "$OUT/build" \
    --output-dir "$OUT/model" --max-steps 20
python -c "
from dptrain.model import DiffusionPrint
import torch
model = DiffusionPrint.from_pretrained('$OUT/model').eval()
x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
print('loaded', type(model).__name__, 'extract ->', tuple(model.extract(x).shape))
"

# 3. dpeval probe and spectra: an evaluation set from the held-out photos (pristine and
#    VAE-reconstructed) and 8 text-to-image images per generator (tiny-flux marked held out for
#    the open-set step); a linear probe on the frozen GAP features of the trained model and of a
#    random-init one; Fig. 3-style spectra.
dpgen evalset --generators tiny-sd21,tiny-sdxl,tiny-flux --reconstruct "$OUT/photos-eval" \
    --pristine "$OUT/photos-eval" --num-generated 8 --image-size 256 --held-out tiny-flux \
    --train-data "$OUT/build" --out "$OUT/eval"
dpeval probe --model "$OUT/model" --data "$OUT/eval" --update-card
# the same architecture with random weights, for comparison
python -c "
import json, torch
from dptrain.model import DiffusionPrint
torch.manual_seed(0)
DiffusionPrint(**json.load(open('$OUT/model/config.json'))).save_pretrained('$OUT/random-init')
"
dpeval probe --model "$OUT/random-init" --data "$OUT/eval" --in-domain sd21,sdxl,flux
dpeval spectra --data "$OUT/build" --out "$OUT/spectra"
# which generator made a patch (prototype head, known: tiny-sd21, tiny-sdxl and real), and is
# it one never seen (tiny-flux, held out)? closed-set and open-set metrics, figures
dpeval attribute fit --model "$OUT/model" --data "$OUT/eval" --known sd21,sdxl --out "$OUT/attribute"

# 4. dpeval tgif: a TGIF-shaped fixture (TGIF's folder and file names; fakes inpainted by the
#    tiny pipelines), Lite Baseline (MiT-B2, random init: no download) fine-tuned with the
#    trained extractor frozen, F1@0.5 per generator x mask type (TGIF and TruFor tables); the
#    validation-best model goes to $OUT/tgif/best with its card and training curves.
python -c "
from dpeval.tgif.fixture import make_tgif_fixture
from dpgen.logs import setup_logging
setup_logging()  # the CLIs' logging: progress on stderr, needless library notices dropped
make_tgif_fixture('$OUT/tgif-fixture')
"
dpeval tgif --extractor "$OUT/model" --data "$OUT/tgif-fixture" --rgb-encoder-init random \
    --crop-size 64 --max-steps 20 --output-dir "$OUT/tgif"
#    the same localizer with DiffIML's score-based mask decoder (its mask autoencoder trained
#    first), in the same tables, with the difference to the All-MLP decoder's run
dpeval tgif --extractor "$OUT/model" --data "$OUT/tgif-fixture" --rgb-encoder-init random \
    --crop-size 64 --max-steps 20 --output-dir "$OUT/tgif-diffiml" --decoder diffiml \
    --baseline "$OUT/tgif/results.json"

# 5. dpeval localize and score: the validation-best localizer of step 4 (a Hub model in
#    $OUT/tgif/best) maps the bundled photos and a TGIF-fixture fake at their full size (16-bit
#    maps, 0/255 masks, overlays, results.jsonl); then every F1 convention of the fake's map.
dpeval localize --model "$OUT/tgif/best" "$OUT/photos-train" "$OUT/photos-eval" \
    "$OUT/tgif-fixture/SD2-fr/testing/car/301_mask_segm.png_sd2-512_0.png" --out "$OUT/localize"
printf 'pred,mask\n301_mask_segm.png_sd2-512_0.png,301_mask_segm_512.png\n' > "$OUT/pairs.csv"
dpeval score --pred "$OUT/localize/maps" --masks "$OUT/tgif-fixture/masks/testing/car" \
    --pairs "$OUT/pairs.csv" --out "$OUT/score"
