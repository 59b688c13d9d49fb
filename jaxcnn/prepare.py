"""Prepare a dataset once: `python -m jaxcnn.prepare --dataset=imagenette --data_dir=gs://b/tfds`.

Downloads (or, for Fashion-MNIST, converts Debian's offline copy) and writes the TFDS files of a
dataset into `--data_dir`, a local folder or a bucket, and prints what it holds. Run it once before
a multi-host job (tpu_scripts/prepare_data.sh runs it on worker 0 of a TPU slice), so that the hosts
of the job read a prepared dataset instead of racing to prepare it. `python -m jaxcnn.train
--distributed` also prepares a missing dataset on process 0 alone while the others wait.

`--dataset=folder:PATH` checks a folder of images instead (nothing is written): its layout, every
image opened once, and prints what training from it would use (classes with counts, the split,
conversions, skipped files, statistics).
"""

from absl import flags

from jaxcnn import cli


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    return cli.Flags(
        dataset=d.string(
            "dataset",
            "fashion_mnist",
            "TFDS dataset name ('digits': nothing to do; folder:PATH: check a folder of images).",
        ),
        data_dir=d.string(
            "data_dir",
            None,
            "TFDS data dir (e.g. gs://bucket/tensorflow_datasets); default TFDS's.",
        ),
    )


def main(argv: list[str], f: cli.Flags) -> int:
    del argv
    from jaxcnn import data

    if data.folder.is_folder(f.dataset.value):
        info = data.dataset_info(f.dataset.value)
        print("\n".join(info.record.summary()))
        return 0
    info = data.dataset_info(f.dataset.value, f.data_dir.value)  # prepares it when missing
    where = f.data_dir.value or "TFDS's default data dir"
    print(
        f"{info.name} is prepared in {where}: {info.num_train} train / {info.num_eval} "
        f"{info.eval_split} examples, {info.num_classes} classes, images {info.image_shape}."
    )
    return 0


if __name__ == "__main__":
    cli.run(define_flags, main)
