#!/usr/bin/env python3
"""Train the embedded demo model (DemoNet) on synthetic shapes; write its weights.

Seeded and reproducible: every epoch draws fresh frames from
``ShapeGenerator(seed * 1000 + epoch)`` at mixed source sizes (30% of them JPEG
compressed, as a video codec would), preprocessed by
``jetson_deploy.preprocess.preprocess`` with the demo spec (the same code the
runtime uses), and trains ``--passes`` times over them under random flips and
quarter turns (every class is closed under them).  Held-out accuracy is measured
on a seed never used in training.
Runs in a few minutes on 2 CPU cores:

    python scripts/train_demo_model.py            # writes jetson_deploy/demo/weights.pt
"""
import argparse
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVAL_SEED = 900001  # held out: training uses seeds seed*1000 + epoch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=str(ROOT / "jetson_deploy" / "demo" / "weights.pt"), help="weights file to write")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    ap.add_argument("--epochs", type=int, default=9, help="epochs, each on fresh frames (default 9)")
    ap.add_argument("--passes", type=int, default=2, help="passes over each epoch's frames, each under new flips/rotations (default 2)")
    ap.add_argument("--per-epoch", type=int, default=8000, help="frames generated per epoch (default 8000)")
    ap.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    ap.add_argument("--lr", type=float, default=4e-3, help="peak learning rate (default 4e-3)")
    ap.add_argument("--jpeg", type=float, default=0.3, help="fraction of frames JPEG-compressed, as video codecs do")
    ap.add_argument("--eval", type=int, default=2000, help="held-out frames for the final accuracy (default 2000)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from tqdm import tqdm

    from jetson_deploy._files import atomic_write_bytes, sha256_file
    from jetson_deploy.demo import load_spec
    from jetson_deploy.demo.model import build_model
    from jetson_deploy.demo.shapes import dataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    spec = load_spec()
    model = build_model()
    steps_per_epoch = (args.passes * args.per_epoch + args.batch - 1) // args.batch
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    t0 = time.time()
    for epoch in range(args.epochs):
        with tqdm(total=args.per_epoch, desc="epoch {}/{} data".format(epoch + 1, args.epochs), file=sys.stderr, leave=False) as bar:
            x, y = dataset(args.per_epoch, args.seed * 1000 + epoch, spec=spec, jpeg=args.jpeg, progress=bar.update)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.cat([torch.randperm(len(y), generator=g) for _ in range(args.passes)])
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc="epoch {}/{}".format(epoch + 1, args.epochs), file=sys.stderr)
        for s in bar:
            idx = order[s * args.batch : (s + 1) * args.batch]
            xb, yb = x[idx], y[idx]
            # Every class is closed under the 8 flips/quarter turns of the square input.
            k = int(torch.randint(8, (1,), generator=g))
            if k & 3:
                xb = torch.rot90(xb, k & 3, dims=[2, 3])
            if k & 4:
                xb = torch.flip(xb, dims=[3])
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            loss_sum += loss.item() * len(yb)
            bar.set_postfix(loss="{:.3f}".format(loss_sum / total), acc="{:.3f}".format(correct / total))
        bar.close()
        print(
            "epoch {:2d}: loss {:.4f} train acc {:.4f} ({:.0f}s)".format(epoch + 1, loss_sum / total, correct / total, time.time() - t0),
            file=sys.stderr,
        )

    model.eval()
    xe, ye = dataset(args.eval, EVAL_SEED, spec=spec)
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(xe[i : i + 500])).argmax(1) for i in range(0, len(ye), 500)])
    acc = float((pred.numpy() == ye).mean())
    # Held-out frames again (same scenes, sizes drawn anew), all JPEG-compressed as a video file would be.
    xj, yj = dataset(args.eval, EVAL_SEED, spec=spec, jpeg=1.0)
    with torch.no_grad():
        predj = torch.cat([model(torch.from_numpy(xj[i : i + 500])).argmax(1) for i in range(0, len(yj), 500)])
    acc_j = float((predj.numpy() == yj).mean())

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    out = atomic_write_bytes(args.out, buf.getvalue())
    print(
        "held-out accuracy {:.4f} on {} frames (seed {}), {:.4f} after JPEG; {:.0f}s; wrote {} ({} bytes, sha256 {})".format(
            acc, len(ye), EVAL_SEED, acc_j, time.time() - t0, out, out.stat().st_size, sha256_file(out)[:16]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
