//! Which instruction set the CPU kernels run on, chosen at run time.
//!
//! One x86-64 binary carries every path: the best the CPU has is taken unless the environment
//! variable `CHAR_LSTM_SIMD` (`avx512`, `avx2` or `portable`) names another, so that tests and
//! benchmarks can measure each path on one machine. A NEON path would be one more variant here,
//! with its register tile in `cpu/tile/`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that forces a path.
pub const SIMD_ENV: &str = "CHAR_LSTM_SIMD";

/// An instruction-set path of the CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Simd {
    /// AVX-512 (F, VL, DQ) with FMA: 16 lanes, an `8 x 32` register tile.
    Avx512,
    /// AVX2 with FMA: 8 lanes, a `6 x 16` register tile.
    Avx2,
    /// No SIMD of our own: the `gemm` crate's products and loops as the compiler vectorizes
    /// them for the crate's target (every CPU).
    Portable,
}

/// A path that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimdError {
    /// The name is none of the paths.
    #[error("{SIMD_ENV}={0:?}: expected avx512, avx2 or portable")]
    Unknown(String),
    /// The CPU lacks the path's instructions.
    #[error("{SIMD_ENV}={name}: this CPU has no {name} (it supports: {supported})", name = .0.name(), supported = Simd::supported_names())]
    Unsupported(Simd),
}

/// The path in use, as `Simd as u8 + 1`; 0 until first asked.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

impl Simd {
    const ALL: [Simd; 3] = [Simd::Avx512, Simd::Avx2, Simd::Portable];

    /// The name `CHAR_LSTM_SIMD` takes and `bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2",
            Simd::Portable => "portable",
        }
    }

    /// The path called `name`.
    pub fn parse(name: &str) -> Result<Self, SimdError> {
        Self::ALL
            .into_iter()
            .find(|simd| simd.name() == name.trim())
            .ok_or_else(|| SimdError::Unknown(name.to_string()))
    }

    /// Whether this CPU has the path's instructions.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            Simd::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every path this CPU supports, fastest first.
    pub fn supported() -> Vec<Simd> {
        Self::ALL.into_iter().filter(|s| s.is_supported()).collect()
    }

    fn supported_names() -> String {
        let names: Vec<&str> = Self::supported().iter().map(|s| s.name()).collect();
        names.join(", ")
    }

    /// The path `CHAR_LSTM_SIMD` asks for, or the fastest this CPU supports when it is unset.
    pub fn from_env() -> Result<Self, SimdError> {
        match std::env::var(SIMD_ENV) {
            Ok(name) if !name.trim().is_empty() => {
                let simd = Self::parse(&name)?;
                if simd.is_supported() {
                    Ok(simd)
                } else {
                    Err(SimdError::Unsupported(simd))
                }
            }
            _ => Ok(Self::supported()[0]),
        }
    }

    /// The path the kernels run on now: the one last [`Simd::activate`]d, else
    /// [`Simd::from_env`] (the fastest path, with a warning on stderr, when the variable names
    /// one that cannot run here; callers that want that as an error call `from_env` first).
    pub fn active() -> Self {
        match ACTIVE.load(Ordering::Relaxed) {
            0 => {
                let simd = Self::from_env().unwrap_or_else(|e| {
                    eprintln!("warning: {e}; using {}", Self::supported()[0].name());
                    Self::supported()[0]
                });
                let _ = ACTIVE.compare_exchange(
                    0,
                    simd as u8 + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                Self::decode(ACTIVE.load(Ordering::Relaxed))
            }
            code => Self::decode(code),
        }
    }

    fn decode(code: u8) -> Self {
        Self::ALL[usize::from(code) - 1]
    }

    /// Makes the kernels run on this path from now on, for the whole process.
    pub fn activate(self) -> Result<(), SimdError> {
        if !self.is_supported() {
            return Err(SimdError::Unsupported(self));
        }
        ACTIVE.store(self as u8 + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `f` with the kernels on this path, then restores the path before. Calls are
    /// serialized, so code that must see one path throughout (a comparison of two results bit
    /// for bit) runs inside `Simd::active().run(..)`.
    ///
    /// # Panics
    /// If the CPU lacks the path.
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        let _guard = switching();
        let before = Self::active();
        self.activate().unwrap_or_else(|e| panic!("{e}"));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        before.activate().expect("it ran before");
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Held while [`Simd::run`] has switched the path; a test that failed inside leaves nothing to
/// repair.
fn switching() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Defines a function whose body is compiled once per path, with that path's instructions
/// enabled so its loops vectorize 16 or 8 lanes wide, and runs the active path's copy.
macro_rules! per_simd_path {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            $(#[$attr])*
            #[inline(always)]
            fn lanes($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            match $crate::simd::Simd::active() {
                $crate::simd::Simd::Avx512 => {
                    $(#[$attr])*
                    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                    fn wide($($arg: $ty),*) $(-> $ret)? {
                        lanes($($arg),*)
                    }
                    // SAFETY: a path is active only where the CPU supports it.
                    return unsafe { wide($($arg),*) };
                }
                $crate::simd::Simd::Avx2 => {
                    $(#[$attr])*
                    #[target_feature(enable = "avx2,fma")]
                    fn wide($($arg: $ty),*) $(-> $ret)? {
                        lanes($($arg),*)
                    }
                    // SAFETY: a path is active only where the CPU supports it.
                    return unsafe { wide($($arg),*) };
                }
                $crate::simd::Simd::Portable => {}
            }
            lanes($($arg),*)
        }
    };
}

pub(crate) use per_simd_path;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unsupported_paths_are_refused() {
        for simd in Simd::ALL {
            assert_eq!(Simd::parse(simd.name()), Ok(simd));
        }
        assert!(matches!(Simd::parse("sse9"), Err(SimdError::Unknown(_))));
        assert!(Simd::Portable.is_supported());
        for simd in Simd::ALL.into_iter().filter(|s| !s.is_supported()) {
            assert_eq!(simd.activate(), Err(SimdError::Unsupported(simd)));
        }
        let message = SimdError::Unknown("x".into()).to_string();
        assert!(
            message.contains(SIMD_ENV) && message.contains("avx2"),
            "{message}"
        );
    }

    #[test]
    fn run_switches_the_path_and_restores_it() {
        // Read while no other test's `run` has switched it.
        let own_path = || {
            let _guard = switching();
            Simd::active()
        };
        let before = own_path();
        for simd in Simd::supported() {
            assert_eq!(simd.run(Simd::active), simd);
        }
        assert_eq!(own_path(), before);
    }
}
