set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch, lightning, open_clip, albumentations; print(torch.__version__, lightning.__version__, torch.cuda.get_device_name())" || exit
python3 -c "from drgrade.data import write_synthetic; write_synthetic('data/bench', 72, 24, image_size=2000, seed=0)" > /dev/null 2>&1
for p in 32-true bf16-mixed; do
  timeout 170 python3 benchmarks/bench.py --device cuda --precision $p --only train predict --workers 12 --steps 8 --repeats 2 --batch 64 --json $OUT/gpu_$p.json 2>&1 | grep -E "^  |machine"
done
# DDP across the one GPU is not possible; check bf16 + ckpt through the CLI instead
timeout 120 python3 -m drgrade fit --config configs/fcn_clip.yaml --config configs/demo.yaml --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir runs/gpu --trainer.precision bf16-mixed --trainer.accelerator gpu --trainer.max_epochs 3 --trainer.enable_progress_bar false --data.num_workers 8 2>&1 | grep -E "stopped|Error|error" 
ls runs/gpu/lightning_logs/version_0/checkpoints/ && tail -3 runs/gpu/lightning_logs/version_0/metrics.csv
