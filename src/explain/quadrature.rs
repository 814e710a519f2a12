//! Gauss–Legendre quadrature on [-1, 1] (numpy's `leggauss`), the nodes and
//! weights of Integrated Gradients' default approximation in Captum.

/// The `n` nodes (ascending, as numpy orders them) and weights of
/// Gauss–Legendre quadrature on [-1, 1]: the roots of the Legendre
/// polynomial P_n by Newton's method from Tricomi's estimate, and
/// w = 2 / ((1 - x^2) P_n'(x)^2).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in 1..=n {
        let mut x = (std::f64::consts::PI * (i as f64 - 0.25) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (p, d) = legendre(n, x);
            dp = d;
            let dx = p / d;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        let (_, d) = legendre(n, x);
        if d.is_finite() {
            dp = d;
        }
        nodes.push(x);
        weights.push(2.0 / ((1.0 - x * x) * dp * dp));
    }
    nodes.reverse();
    weights.reverse();
    (nodes, weights)
}

/// P_n(x) and P_n'(x) by the three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let k = k as f64;
        let p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
    }
    let d = n as f64 * (x * p1 - p0) / (x * x - 1.0);
    (p1, d)
}

#[cfg(test)]
mod tests {
    use super::gauss_legendre;

    /// Exact for polynomials of degree 2n - 1; weights sum to 2; nodes
    /// symmetric and ascending.
    #[test]
    fn integrates_polynomials_exactly() {
        for n in [1usize, 2, 5, 50, 64] {
            let (x, w) = gauss_legendre(n);
            assert_eq!(x.len(), n);
            assert!(x.windows(2).all(|p| p[0] < p[1]), "n={n}: not ascending");
            assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-13, "n={n}");
            for deg in (0..2 * n).step_by(3) {
                let got: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(deg as i32)).sum();
                let want = if deg % 2 == 1 {
                    0.0
                } else {
                    2.0 / (deg as f64 + 1.0)
                };
                assert!((got - want).abs() < 1e-12, "n={n} x^{deg}: {got} vs {want}");
            }
        }
    }
}
