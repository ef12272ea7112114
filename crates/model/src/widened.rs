//! Functions compiled twice: for AVX-512 where the CPU has it, and for the baseline target.

/// Defines a function whose body runs compiled for AVX-512 where the CPU has it (its
/// elementwise loop then runs 16 lanes wide instead of the baseline x86-64 target's 4), and as
/// the crate is built elsewhere.
macro_rules! widened {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            $(#[$attr])*
            #[inline(always)]
            fn lanes($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") {
                $(#[$attr])*
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    lanes($($arg),*)
                }
                // SAFETY: the CPU has the features `wide` is compiled for.
                return unsafe { wide($($arg),*) };
            }
            lanes($($arg),*)
        }
    };
}
