//! Vectorisable element math shared by the fused CPU kernels of `lcd` and
//! `morph`: an `exp` without a libm call (so loops over it vectorise) and
//! [`simd_kernels!`](crate::simd_kernels), which compiles slice loops for the
//! baseline target, for AVX2 + FMA and for AVX-512F, chosen at run time.
//! Rust does not contract `a * b + c` into FMA by itself, so the three builds
//! of a loop give the same values to the bit.

/// `exp(x)` for f32 without a libm call: `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`,
/// degree-6 Taylor polynomial of `e^r` (truncation ≤ 1.2e-7 relative), `2^n`
/// from the exponent bits. Inputs are clamped to [−87.3, 88] (so `2^n` stays
/// a normal float); below that the result is ≈ 1e-38 instead of a denormal.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// Element loops written over slices, each compiled for the baseline target,
/// for AVX2 + FMA and for AVX-512F; a dispatching function of the same name
/// picks the widest the CPU has. Items of the calling module are visible in
/// the bodies (`use super::*`).
///
/// ```ignore
/// datasets::simd_kernels! {
///     k_double(x: &mut [f32]) { for v in x.iter_mut() { *v *= 2.0; } }
/// }
/// ```
#[macro_export]
macro_rules! simd_kernels {
    ($($name:ident ( $($a:ident : $t:ty),* ) $body:block)*) => {
        mod simd_base {
            #[allow(unused_imports)]
            use super::*;
            $(#[inline(never)] pub fn $name($($a: $t),*) $body)*
        }
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        mod simd_avx2 {
            #[allow(unused_imports)]
            use super::*;
            $(
                /// # Safety
                /// The CPU must support AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                pub unsafe fn $name($($a: $t),*) $body
            )*
        }
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        mod simd_avx512 {
            #[allow(unused_imports)]
            use super::*;
            $(
                /// # Safety
                /// The CPU must support AVX-512F, AVX2 and FMA.
                #[target_feature(enable = "avx512f,avx2,fma")]
                pub unsafe fn $name($($a: $t),*) $body
            )*
        }
        $(
            #[allow(unsafe_code)]
            fn $name($($a: $t),*) {
                #[cfg(target_arch = "x86_64")]
                {
                    if std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the features were detected on this CPU.
                        return unsafe { simd_avx512::$name($($a),*) };
                    }
                    if std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the features were detected on this CPU.
                        return unsafe { simd_avx2::$name($($a),*) };
                    }
                }
                simd_base::$name($($a),*)
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let r = (exp_f32(x) - x.exp()).abs() / x.exp();
            worst = worst.max(r);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "max relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(-1000.0) < 1e-37);
    }

    crate::simd_kernels! {
        k_axpy(a: f32, x: &[f32], y: &mut [f32]) {
            for (y, &x) in y.iter_mut().zip(x) {
                *y += a * x;
            }
        }
    }

    /// Every build of a kernel gives the same bits (no FMA contraction).
    #[test]
    fn builds_agree() {
        let x: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y0: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut y1 = y0.clone();
        simd_base::k_axpy(1.3, &x, &mut y0);
        k_axpy(1.3, &x, &mut y1);
        assert_eq!(y0, y1);
    }
}
