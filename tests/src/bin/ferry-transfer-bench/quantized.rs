//! Quantized pairs: a real retrained ONNX pair turned into what edge runtimes load, an int8
//! ONNX model (onnxruntime's dynamic quantization) and a Q8_0 GGUF file (gguf-py), by
//! `tests/bench/quantized_pair.py`. No registry ships two int8 or GGUF releases of one model
//! (the issue asked for them where they exist), so the pair keeps real retrained weights and
//! takes the formats from the tools that make them. The files are cached beside the wheels.

use std::path::Path;

use anyhow::{Context, Result};

use crate::Pair;

/// What the script needs, pinned so the pair is the same file on every machine.
pub(crate) const TOOLS: [&str; 3] = ["onnx==1.23.2", "onnxruntime==1.32.0", "gguf==0.19.0"];

/// The modules [`TOOLS`] provide.
pub(crate) const IMPORTS: &str = "onnx, onnxruntime, gguf";

/// The format a pair is quantized to.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// int8 weights in ONNX (Conv, LSTM and MatMul weights; subgraphs included).
    Int8Onnx,
    /// Q8_0 blocks in GGUF (f32 where a tensor's rows are not a multiple of 32 long).
    Q8Gguf,
}

impl Kind {
    /// The script's file name suffix for this format.
    fn suffix(self) -> &'static str {
        match self {
            Kind::Int8Onnx => "int8.onnx",
            Kind::Q8Gguf => "q8_0.gguf",
        }
    }
}

/// `source` quantized to `kind`; made once into `dir/quantized-{tag}` with `python`.
pub(crate) fn pair(
    dir: &Path,
    python: &Path,
    source: &Pair,
    tag: &str,
    kind: Kind,
) -> Result<Pair> {
    let out = dir.join(format!("quantized-{tag}"));
    let file = |version: &str| out.join(format!("{version}.{}", kind.suffix()));
    if !file("old").exists() || !file("new").exists() {
        std::fs::create_dir_all(&out)?;
        let (old, new) = (out.join("source-old.onnx"), out.join("source-new.onnx"));
        std::fs::write(&old, &source.old)?;
        std::fs::write(&new, &source.new)?;
        crate::run_script(
            python,
            "quantized_pair.py",
            &[old.as_os_str(), new.as_os_str(), out.as_os_str()],
            &format!("quantizing {}", source.name),
        )?;
    }
    let read = |version: &str| {
        let path = file(version);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(Pair {
        name: format!("{}, {}", source.name, kind.suffix()),
        old: read("old")?,
        new: read("new")?,
        floor: None,
    })
}
