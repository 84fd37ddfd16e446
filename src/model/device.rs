//! The compute device, as the user names it (`--device`) and as Burn runs it.
//!
//! [`ComputeDevice`] is the parsed name: the CLI turns `--device` into one (its `FromStr`
//! is the clap value parser) and the library takes it by value, so a name is checked once,
//! where it is typed. [`ComputeDevice::open`] gives Burn's [`Device`]; for the GPU backends it
//! brings the device up at once, so a missing driver is a one-line error here rather than a
//! panic inside the first tensor operation.
//!
//! Names: `cpu` (alias `flex`): Burn's flex backend with this crate's kernels, always built;
//! `cuda`, `cuda:N`: NVIDIA GPU N (`--features cuda`); `wgpu` (alias `gpu`): the adapter wgpu
//! prefers (a hardware GPU when there is one; `CUBECL_WGPU_DEFAULT_DEVICE` overrides it, e.g.
//! `Cpu` or `DiscreteGpu(1)`), `wgpu:discrete:N`, `wgpu:integrated:N`: the Nth discrete /
//! integrated GPU, `wgpu:cpu`: the software adapter (Mesa's lavapipe/llvmpipe), which CI
//! uses (`--features wgpu`).

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::module::{ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use super::{ModelConfig, Network};

/// Which wgpu adapter a [`ComputeDevice::Wgpu`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgpuAdapter {
    /// wgpu's choice (high-power GPU first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides it).
    Default,
    /// The Nth discrete GPU.
    Discrete(usize),
    /// The Nth integrated GPU.
    Integrated(usize),
    /// The CPU (software) adapter, e.g. Mesa's lavapipe.
    Cpu,
}

/// A compute device by name; see the module documentation for the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDevice {
    /// Burn's flex backend (CPU).
    #[default]
    Cpu,
    /// NVIDIA GPU N through CUDA.
    Cuda(usize),
    /// A GPU (or the software adapter) through wgpu.
    Wgpu(WgpuAdapter),
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeDevice::Cpu => write!(f, "cpu"),
            ComputeDevice::Cuda(i) => write!(f, "cuda:{i}"),
            ComputeDevice::Wgpu(WgpuAdapter::Default) => write!(f, "wgpu"),
            ComputeDevice::Wgpu(WgpuAdapter::Discrete(i)) => write!(f, "wgpu:discrete:{i}"),
            ComputeDevice::Wgpu(WgpuAdapter::Integrated(i)) => write!(f, "wgpu:integrated:{i}"),
            ComputeDevice::Wgpu(WgpuAdapter::Cpu) => write!(f, "wgpu:cpu"),
        }
    }
}

impl FromStr for ComputeDevice {
    type Err = anyhow::Error;

    /// Parses a device name (case-insensitive) and checks that this build has its backend.
    fn from_str(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split(':').collect();
        let index = |s: &str| -> Result<usize> {
            s.parse()
                .map_err(|_| anyhow::anyhow!("bad device index in '{name}' (expected e.g. cuda:0)"))
        };
        let device = match parts.as_slice() {
            ["cpu" | "flex"] => ComputeDevice::Cpu,
            ["cuda"] => ComputeDevice::Cuda(0),
            ["cuda", i] => ComputeDevice::Cuda(index(i)?),
            ["wgpu" | "gpu"] => ComputeDevice::Wgpu(WgpuAdapter::Default),
            ["wgpu" | "gpu", "cpu"] => ComputeDevice::Wgpu(WgpuAdapter::Cpu),
            ["wgpu" | "gpu", "discrete"] => ComputeDevice::Wgpu(WgpuAdapter::Discrete(0)),
            ["wgpu" | "gpu", "discrete", i] => {
                ComputeDevice::Wgpu(WgpuAdapter::Discrete(index(i)?))
            }
            ["wgpu" | "gpu", "integrated"] => ComputeDevice::Wgpu(WgpuAdapter::Integrated(0)),
            ["wgpu" | "gpu", "integrated", i] => {
                ComputeDevice::Wgpu(WgpuAdapter::Integrated(index(i)?))
            }
            _ => bail!(
                "unknown device '{name}' (expected cpu, cuda, cuda:N, wgpu, wgpu:cpu, \
                 wgpu:discrete:N or wgpu:integrated:N)"
            ),
        };
        device.check_built()?;
        Ok(device)
    }
}

impl ComputeDevice {
    /// An error unless this build has the device's backend.
    fn check_built(self) -> Result<()> {
        match self {
            ComputeDevice::Cpu => Ok(()),
            ComputeDevice::Cuda(_) if cfg!(feature = "cuda") => Ok(()),
            ComputeDevice::Wgpu(_) if cfg!(feature = "wgpu") => Ok(()),
            ComputeDevice::Cuda(_) => bail!(
                "this a2fseg was built without CUDA support: rebuild with `cargo build --release --features cuda`"
            ),
            ComputeDevice::Wgpu(_) => bail!(
                "this a2fseg was built without wgpu support: rebuild with `cargo build --release --features wgpu`"
            ),
        }
    }

    /// For the log of a command: `None` on the CPU, else the name, the adapter and its
    /// per-buffer limit, e.g. `wgpu:cpu: llvmpipe (LLVM 15.0.6, 256 bits), 128 MiB per
    /// buffer` (opens the device).
    pub fn describe(self) -> Result<Option<String>> {
        if self.is_cpu() {
            return Ok(None);
        }
        let device = self.open()?;
        let limit = max_buffer_bytes(&device)
            .map(|b| format!(", {} per buffer", mib(b)))
            .unwrap_or_default();
        Ok(Some(format!(
            "{self}: {}{limit}",
            device_description(&device)
        )))
    }

    /// Whether this is the CPU (flex) device.
    pub fn is_cpu(self) -> bool {
        self == ComputeDevice::Cpu
    }

    /// Burn's device for this name, brought up (GPU backends: adapter found, driver loaded),
    /// without autodiff (training wraps it in `.autodiff()`).
    pub fn open(self) -> Result<Device> {
        self.check_built()?;
        let device = match self {
            ComputeDevice::Cpu => return Ok(Device::flex()),
            ComputeDevice::Cuda(i) => cuda(i),
            ComputeDevice::Wgpu(a) => wgpu(a),
        };
        bring_up(&device).map_err(|e| anyhow::anyhow!("cannot open the device {self}: {e}"))?;
        Ok(device)
    }
}

/// What runs `device`: `flex (CPU)` or the GPU backend's adapter name (e.g. `llvmpipe (LLVM
/// 15.0.6, 256 bits)` for lavapipe under wgpu, the card's name for a real GPU).
pub fn device_description(device: &Device) -> String {
    match adapter_name(device) {
        Some(name) => name,
        None => "flex (CPU)".to_string(),
    }
}

/// The adapter name a GPU backend reports for `device` (`None` for flex).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn adapter_name(device: &Device) -> Option<String> {
    device.identity().map(|id| id.name)
}

/// The adapter name a GPU backend reports for `device` (`None` for flex).
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub fn adapter_name(_device: &Device) -> Option<String> {
    None
}

/// The largest buffer `device` can allocate in one piece, in bytes: a GPU backend's
/// per-buffer limit (128 MiB on lavapipe, usually 2–4 GiB on a GPU); `None` on flex, whose
/// tensors are ordinary heap memory.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn max_buffer_bytes(device: &Device) -> Option<u64> {
    use burn::backend::DispatchDevice;
    fn of(d: &DispatchDevice) -> Option<u64> {
        #[allow(unreachable_patterns)]
        match d {
            DispatchDevice::Cube(c) => Some(c.client().properties().memory.max_page_size),
            DispatchDevice::Autodiff(inner) => of(inner),
            _ => None,
        }
    }
    of(device.as_dispatch())
}

/// The largest buffer `device` can allocate in one piece (`None`: no limit, as on flex).
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub fn max_buffer_bytes(_device: &Device) -> Option<u64> {
    None
}

/// An error naming the tensor and the limit if a tensor of `shape` (f32) does not fit in one
/// buffer of `device`; `what` says which tensor (e.g. "the first decoder stage's features").
pub fn check_fits(device: &Device, what: &str, shape: &[usize]) -> Result<()> {
    let Some(limit) = max_buffer_bytes(device) else {
        return Ok(());
    };
    let bytes = shape.iter().product::<usize>() as u64 * 4;
    if bytes > limit {
        bail!(
            "{what} {shape:?} needs {} in one buffer, but the device {} allows {} per buffer: \
             use a smaller patch or batch",
            mib(bytes),
            device_description(device),
            mib(limit)
        );
    }
    Ok(())
}

/// A freshly initialised network on `device` whose weights are those `config.init` draws on
/// the CPU after seeding it with `seed`, so one seed gives one network on every device (the
/// GPU backends have random generators of their own). On flex this is exactly
/// `device.seed(seed); config.init(device)`; elsewhere the CPU's draw is moved to `device`
/// (with autodiff if `device` has it).
pub fn init_seeded<N: Network>(config: &ModelConfig, seed: u64, device: &Device) -> N {
    let flex = Device::flex();
    if *device == flex {
        device.seed(seed);
        return N::init(config, device);
    }
    let cpu = if device.is_autodiff() {
        flex.autodiff()
    } else {
        flex
    };
    cpu.seed(seed);
    let model = N::init(config, &cpu);
    // Burn draws a parameter's values when it is first used: draw them all now, in module
    // order (the order the CPU path draws them in), before the move.
    struct Draw;
    impl ModuleVisitor for Draw {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            param.val();
        }
    }
    model.visit(&mut Draw);
    model.fork(device)
}

/// An error if the network's largest tensor for `batch` patches of `config.patch_size` does
/// not fit in one buffer of `device` (see [`max_buffer_bytes`]; always fine on flex).
///
/// With Burn's direct convolution (the GPU backends' default without autotuning) the largest
/// buffers are activations, and the largest activation is `[B, 2·C, z, y, x]` at full
/// resolution (`C` = `base_features`): the first decoder block's input `[upsampled; skip]`,
/// the attention convolutions' `[F̄; F_m]` and HeMIS's `[F̄; Var]`. So on lavapipe (128 MiB per
/// buffer) the paper preset (`C` = 32) fits up to 524,288 voxels per patch (e.g. 80³, not
/// 128³) and the small preset (`C` = 8) up to 2,097,152 (128³).
pub fn check_model_fits(config: &ModelConfig, batch: usize, device: &Device) -> Result<()> {
    let [x, y, z] = config.patch_size;
    check_fits(
        device,
        "the full-resolution decoder input",
        &[batch, 2 * config.stage_features(0), z, y, x],
    )
}

/// `bytes` as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Device {
    Device::cuda(index)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Device {
    unreachable!("check_built rejects cuda in a build without it")
}

#[cfg(feature = "wgpu")]
fn wgpu(adapter: WgpuAdapter) -> Device {
    use burn::tensor::DeviceKind;
    Device::wgpu(match adapter {
        WgpuAdapter::Default => DeviceKind::DefaultDevice,
        WgpuAdapter::Discrete(i) => DeviceKind::DiscreteGpu(i),
        WgpuAdapter::Integrated(i) => DeviceKind::IntegratedGpu(i),
        WgpuAdapter::Cpu => DeviceKind::Cpu,
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_adapter: WgpuAdapter) -> Device {
    unreachable!("check_built rejects wgpu in a build without it")
}

/// Brings a GPU device up (Burn does so lazily, on first use, and panics when it cannot):
/// the panic of a failed bring-up becomes the error returned here, and its message is kept
/// off stderr (the panic hook stays quiet on this thread only while bringing up).
fn bring_up(device: &Device) -> Result<(), String> {
    thread_local! {
        static BRINGING_UP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !BRINGING_UP.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    BRINGING_UP.with(|b| b.set(true));
    let result = std::panic::catch_unwind(|| {
        adapter_name(device);
    });
    BRINGING_UP.with(|b| b.set(false));
    result.map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("the backend failed to start");
        text.lines().next().unwrap_or_default().to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let names = ["cpu"];
        for name in names {
            let d: ComputeDevice = name.parse().unwrap();
            assert_eq!(d.to_string(), name);
        }
        assert_eq!("FLEX".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cpu);
        assert_eq!(ComputeDevice::default(), ComputeDevice::Cpu);
    }

    #[test]
    fn gpu_names_parse_when_built() {
        for (name, want) in [
            ("cuda", ComputeDevice::Cuda(0)),
            ("cuda:2", ComputeDevice::Cuda(2)),
            ("wgpu", ComputeDevice::Wgpu(WgpuAdapter::Default)),
            ("GPU", ComputeDevice::Wgpu(WgpuAdapter::Default)),
            ("wgpu:cpu", ComputeDevice::Wgpu(WgpuAdapter::Cpu)),
            (
                "wgpu:discrete:1",
                ComputeDevice::Wgpu(WgpuAdapter::Discrete(1)),
            ),
            (
                "wgpu:integrated",
                ComputeDevice::Wgpu(WgpuAdapter::Integrated(0)),
            ),
        ] {
            match name.parse::<ComputeDevice>() {
                Ok(d) => {
                    assert_eq!(d, want, "{name}");
                    assert_eq!(d.to_string().parse::<ComputeDevice>().unwrap(), d);
                }
                Err(e) => {
                    let feature = if name.starts_with("cuda") {
                        "cuda"
                    } else {
                        "wgpu"
                    };
                    assert!(
                        e.to_string().contains(&format!("--features {feature}")),
                        "{name}: {e}"
                    );
                    assert!(want.check_built().is_err());
                }
            }
        }
    }

    #[test]
    fn bad_names_are_errors() {
        for name in ["tpu", "cuda:x", "cpu:1", "wgpu:tpu", "wgpu:discrete:x", ""] {
            let e = name.parse::<ComputeDevice>().unwrap_err().to_string();
            assert!(e.contains(name.trim()), "{name}: {e}");
        }
    }

    #[test]
    fn flex_has_no_buffer_limit() {
        let d = ComputeDevice::Cpu.open().unwrap();
        assert_eq!(max_buffer_bytes(&d), None);
        assert!(check_fits(&d, "a tensor", &[1 << 20, 1 << 20]).is_ok());
        assert_eq!(device_description(&d), "flex (CPU)");
    }
}
