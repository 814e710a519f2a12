//! Which vector instructions the CPU has, and `widest!`: one loop
//! compiled for AVX-512F, for AVX2 + FMA and for the baseline, the widest
//! the CPU runs chosen at each call. The loops it serves are plain Rust
//! that the compiler vectorises; the instruction set decides how wide.

/// Whether the CPU has AVX-512F with AVX2 and FMA (sixteen floats per
/// instruction; the elementwise loops then run twice as wide as with AVX2).
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX2 and FMA (eight floats per instruction).
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `widest! { fn name[generics](args) => body }` defines `name`, which runs
/// `body(args)` compiled for the widest of AVX-512F (+ AVX2, FMA), AVX2 +
/// FMA and the baseline that the CPU has. `body` (a function in scope,
/// returning nothing) should be `#[inline(always)]`, so that each variant
/// holds its own copy of the loop.
macro_rules! widest {
    ($(#[$m:meta])* $v:vis fn $name:ident [$($gen:tt)*] ($($a:ident : $t:ty),* $(,)?) => $body:ident) => {
        $(#[$m])*
        $v fn $name<$($gen)*>($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn wide<$($gen)*>($($a: $t),*) {
                    $body($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast<$($gen)*>($($a: $t),*) {
                    $body($($a),*)
                }
                if $crate::model::cpu::simd::has_avx512() {
                    // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                    return unsafe { wide($($a),*) };
                }
                if $crate::model::cpu::simd::has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { fast($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}
pub(crate) use widest;

#[cfg(test)]
mod tests {
    #[inline(always)]
    fn double(out: &mut [f32], x: &[f32]) {
        for (o, v) in out.iter_mut().zip(x) {
            *o = v * 2.0 + 1.0;
        }
    }

    widest! { fn double_widest[](out: &mut [f32], x: &[f32]) => double }

    /// Every variant the CPU runs gives the baseline's values.
    #[test]
    fn the_widest_variant_matches_the_loop() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32 * 0.37 - 100.0).collect();
        let (mut a, mut b) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        double(&mut a, &x);
        double_widest(&mut b, &x);
        assert_eq!(a, b);
        assert!(a.iter().any(|v| *v != 0.0));
    }
}
