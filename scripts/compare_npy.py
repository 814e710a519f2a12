"""Compares `features` of a semcon .npz with a reference .npy (or one array
of a reference .npz, REF.npz:KEY): max |diff| <= 1e-4 * max(1, |value|).
usage: compare_npy.py OUT.npz REF.npy|REF.npz:KEY [TOL, default 1e-4]"""
import sys
import numpy as np
got = np.load(sys.argv[1])["features"]
if ".npz:" in sys.argv[2]:
    path, key = sys.argv[2].rsplit(":", 1)
    ref = np.load(path)[key]
else:
    ref = np.load(sys.argv[2])
diff = np.abs(got - ref)
tol = (float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4) * np.maximum(1.0, np.abs(ref))
ok = got.shape == ref.shape and bool((diff <= tol).all())
print(f"{'OK  ' if ok else 'FAIL'} {sys.argv[2]}: max |diff| {diff.max():.3g}")
sys.exit(0 if ok else 1)
