//! The CPU backend: plain Rust with AVX2 builds where the CPU has them, checked with the GPU against the reference backend.
//!
//! Storage is a shared, mutable `Vec`; the kernels themselves live in their op modules
//! (`engine::ops::*::cpu`). f32 buffers come from a pool, like the GPU's: shapes are fixed per
//! model, so each training step reuses the buffers of the step before.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::OnceLock;

use crate::engine::backend::Memory;
use crate::error::{Error, Result};

/// Forces a lower build of the CPU kernels than the CPU could run: `portable`, `avx2` (the
/// AVX2 kernels, with the convolutions' multiply-adds unfused) or `avx2-fma`. The kernels read
/// it once per process (`CpuBuild::active`). Tests use it to run every build on one machine.
pub const CPU_BUILD_VAR: &str = "SUPERNET_CPU_BUILD";

/// A build of the CPU kernels, from the plainest up. Where a kernel has a vector build it runs
/// the highest one at or below the active build. The FMA build rounds `a * b + c` once instead
/// of twice, so CPU results differ in the last bits between FMA and non-FMA machines (and
/// between `avx2` and `avx2-fma` here); within a build they are the same on every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuBuild {
    Portable,
    Avx2,
    Avx2Fma,
}

impl CpuBuild {
    pub const ALL: [CpuBuild; 3] = [CpuBuild::Portable, CpuBuild::Avx2, CpuBuild::Avx2Fma];

    pub fn name(self) -> &'static str {
        match self {
            CpuBuild::Portable => "portable",
            CpuBuild::Avx2 => "avx2",
            CpuBuild::Avx2Fma => "avx2-fma",
        }
    }

    /// The highest build this CPU runs.
    pub fn best() -> CpuBuild {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                return if std::arch::is_x86_feature_detected!("fma") {
                    CpuBuild::Avx2Fma
                } else {
                    CpuBuild::Avx2
                };
            }
        }
        CpuBuild::Portable
    }

    /// The build `SUPERNET_CPU_BUILD` asks for (`best()` when unset), or why it cannot run
    /// here: an unknown name, or a build above what the CPU has.
    pub fn from_env() -> Result<CpuBuild> {
        let Some(value) = std::env::var_os(CPU_BUILD_VAR) else {
            return Ok(CpuBuild::best());
        };
        let value = value.to_string_lossy();
        let build = CpuBuild::ALL
            .into_iter()
            .find(|b| b.name() == value)
            .ok_or_else(|| {
                Error::invalid(
                    CPU_BUILD_VAR,
                    format!("'{value}' is not a CPU build; expected portable, avx2 or avx2-fma"),
                )
            })?;
        if build > CpuBuild::best() {
            return Err(Error::invalid(
                CPU_BUILD_VAR,
                format!(
                    "this CPU cannot run the {value} build (it runs up to {})",
                    CpuBuild::best().name()
                ),
            ));
        }
        Ok(build)
    }

    /// The build the kernels run: `from_env`, or `best()` where that fails (the CLI reports the
    /// failure before any kernel runs). Never above what the CPU has, so the vector builds it
    /// selects are safe to call.
    pub fn active() -> CpuBuild {
        static ACTIVE: OnceLock<CpuBuild> = OnceLock::new();
        *ACTIVE.get_or_init(|| CpuBuild::from_env().unwrap_or_else(|_| CpuBuild::best()))
    }

    pub fn has_avx2(self) -> bool {
        self >= CpuBuild::Avx2
    }

    pub fn has_fma(self) -> bool {
        self >= CpuBuild::Avx2Fma
    }
}

/// An f32 host buffer shared between tensors (and mutated in place by the optimizer); when the
/// last handle drops, its `Vec` returns to this thread's pool.
pub type CpuStorage = Rc<CpuBuffer>;

/// u32 or u8 host buffers (indices, labels, dataset pixels).
pub type CpuShared<T> = Rc<RefCell<Vec<T>>>;

pub struct CpuBuffer {
    values: RefCell<Vec<f32>>,
}

impl Deref for CpuBuffer {
    type Target = RefCell<Vec<f32>>;

    fn deref(&self) -> &Self::Target {
        &self.values
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        let values = std::mem::take(self.values.get_mut());
        // A thread that is shutting down has no pool left; the Vec is then simply freed.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            let free = pool.entry(values.len()).or_default();
            if free.len() < POOL_DEPTH {
                free.push(values);
            }
        });
    }
}

/// Free buffers kept per length: more than a step's working set never comes back.
const POOL_DEPTH: usize = 64;

thread_local! {
    static POOL: RefCell<HashMap<usize, Vec<Vec<f32>>>> = RefCell::new(HashMap::new());
}

/// A buffer of `len` values for a kernel that writes every one of them: reused from the pool
/// when one of that length is free (its old values are left in place), else zeros.
pub(crate) fn output(len: usize) -> Vec<f32> {
    let reused = POOL.with(|pool| pool.borrow_mut().get_mut(&len).and_then(Vec::pop));
    reused.unwrap_or_else(|| vec![0.0; len])
}

/// Runs `kernel` on a fresh output of `len` values (it must write all of them) and wraps the
/// result: the CPU side of every single-output kernel.
pub(crate) fn computed(len: usize, kernel: impl FnOnce(&mut [f32])) -> CpuStorage {
    let mut values = output(len);
    kernel(&mut values);
    storage(values)
}

/// A buffer of `len` zeros, reused from the pool when one of that length is free.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut values = output(len);
    values.fill(0.0);
    values
}

/// Elements per parallel task of an elementwise kernel: 64 KiB of f32, large enough that
/// handing a task to the other thread costs little against its work.
pub(crate) const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// Defines a kernel function whose body is compiled twice, as built and for AVX2, and runs
/// the AVX2 build where the active `CpuBuild` has it (checked once per call, a cached flag).
/// Helpers the body calls must be `#[inline(always)]` to be vectorised with it. Plain
/// `a * b + c` stays unfused in both builds, so these kernels give the same bits on every
/// machine (the convolutions' FMA build does not: see `CpuBuild`).
macro_rules! vectorised_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if $crate::engine::backends::cpu::CpuBuild::active().has_avx2() {
                // SAFETY: the active build never exceeds the CPU's, which has `avx2`.
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use vectorised_fn;

#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

pub(crate) fn storage(values: Vec<f32>) -> CpuStorage {
    Rc::new(CpuBuffer {
        values: RefCell::new(values),
    })
}

/// `values` written into `slot` when given (a parameter's gradient slot), else a new buffer.
pub(crate) fn stored_into(slot: Option<&CpuStorage>, values: Vec<f32>) -> CpuStorage {
    match slot {
        Some(slot) => {
            slot.borrow_mut()[..values.len()].copy_from_slice(&values);
            slot.clone()
        }
        None => storage(values),
    }
}

pub(crate) fn shared<T>(values: Vec<T>) -> CpuShared<T> {
    Rc::new(RefCell::new(values))
}

impl Memory for CpuBackend {
    type Storage = CpuStorage;
    type Indices = CpuShared<u32>;
    type Bytes = CpuShared<u8>;

    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Storage> {
        let mut values = zeroed(data.len());
        values.copy_from_slice(data);
        Ok(storage(values))
    }

    fn download(&self, storage: &Self::Storage, len: usize) -> Result<Vec<f32>> {
        Ok(storage.borrow()[..len].to_vec())
    }

    fn upload_indices(&self, data: &[u32]) -> Result<Self::Indices> {
        Ok(shared(data.to_vec()))
    }

    fn download_indices(&self, indices: &Self::Indices, len: usize) -> Result<Vec<u32>> {
        Ok(indices.borrow()[..len].to_vec())
    }

    fn upload_bytes(&self, data: &[u8]) -> Result<Self::Bytes> {
        Ok(shared(data.to_vec()))
    }

    fn zeros(&self, len: usize) -> Result<Self::Storage> {
        Ok(storage(zeroed(len)))
    }

    fn copy_into(
        &self,
        src: &Self::Storage,
        dst: &Self::Storage,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        let src = src.borrow()[..len].to_vec();
        dst.borrow_mut()[dst_offset..dst_offset + len].copy_from_slice(&src);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
