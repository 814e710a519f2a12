//! The eval-mode ResNet on a CUDA GPU through cuDNN, for inference and PGD:
//! the GPU twin of [`super::fused`] (built from the same folded network).
//!
//! Why: candle's CUDA graph runs a convolution as im2col + gemm (or, with
//! its `cudnn` feature, asks cuDNN's heuristics each call, allocating and
//! zero-filling a workspace every time), keeps BatchNorm as separate kernels
//! and differentiates a convolution with its own transposed-convolution
//! kernel; PGD through it ran at 0.19x PyTorch. Here every convolution is one
//! cuDNN call with BatchNorm folded in and bias + residual + ReLU fused
//! (`cudnnConvolutionBiasActivationForward`), algorithms are measured once per
//! shape (`cudnnFind*`, like `torch.backends.cudnn.benchmark`), the workspace
//! is kept, and the input gradient goes through `cudnnConvolutionBackwardData`.
//!
//! Math: strict fp32 by default (cuDNN's FMA math, PyTorch's
//! `torch.backends.cudnn.allow_tf32 = False`); `SEMCON_TF32=1` allows TF32
//! tensor cores (PyTorch's default for convolutions).
//!
//! The head (global average pool, `fc`, softmax cross-entropy) runs as
//! candle ops on the same stream; only the convolutional trunk is here. Taps,
//! logits and gradients are checked against PyTorch by `scripts/gpu_check.sh`
//! on a GPU machine (CI has none).
//!
//! One file for the network (about 800 lines): the plans, the fused calls,
//! the trunk's forward and backward passes and the candle custom ops share
//! the same locked state and saved activations; the cuDNN plumbing is in
//! [`super::cudnn`].

use super::cudnn::{
    drv, ok, ptr, sc, tf32_allowed, unsupported, ADesc, Act, GConv, PDesc, Ptr, TDesc, ONE, ZERO,
};
use crate::model::cpu::folded::FConv;
use crate::model::cpu::fused::FusedNet;
use crate::model::tap::Tap;
use candle_core::cuda_backend::cudarc::cudnn::sys as cd;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream};
use candle_core::{
    bail, CpuStorage, CudaDevice, CudaStorage, CustomOp1, Layout, Result, Shape, Tensor,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct GBlock {
    stage: u8,
    convs: Vec<GConv>,
    down: Option<GConv>,
}

/// Algorithms measured for one convolution at one input shape.
struct Plan {
    x: TDesc,
    y: TDesc,
    fwd: (cd::cudnnConvolutionFwdAlgo_t, cd::cudnnMathType_t, usize),
    bwd: Option<(
        cd::cudnnConvolutionBwdDataAlgo_t,
        cd::cudnnMathType_t,
        usize,
    )>,
    /// Whether the fused conv + bias + activation call takes this algorithm.
    fused: bool,
}

/// What a forward pass keeps for the backward pass.
struct Saved {
    /// The stem's output before max pooling (ImageNet stem).
    stem: Option<Act>,
    pooled: Option<Act>,
    /// Per block: its input and the activations between its convolutions.
    blocks: Vec<(Act, Vec<Act>)>,
    last: Option<Act>,
    input: (usize, usize, usize, usize),
}

struct State {
    handle: cd::cudnnHandle_t,
    relu: ADesc,
    plans: HashMap<(usize, usize, usize, usize), Plan>,
    ws: Option<CudaSlice<u8>>,
    saved: Option<Saved>,
}
// The cuDNN handle is used only under `GpuNet::state`'s lock.
unsafe impl Send for State {}

impl Drop for State {
    fn drop(&mut self) {
        unsafe {
            cd::cudnnDestroy(self.handle);
        }
    }
}

/// The folded network on one GPU.
pub struct GpuNet {
    stem: GConv,
    maxpool: bool,
    blocks: Vec<GBlock>,
    /// `fc` as `[D, K]` (logits = pooled · fc_wt + fc_b) and `[K, D]`.
    fc_wt: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
    tf32: bool,
    /// Conv + bias + residual + ReLU in one cuDNN call (else three).
    fuse: bool,
    stream: Arc<CudaStream>,
    state: Mutex<State>,
    /// One forward-with-saved-activations + backward pair at a time.
    grad_lock: Mutex<()>,
}

impl std::fmt::Debug for GpuNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuNet({} blocks, tf32 {})",
            self.blocks.len(),
            self.tf32
        )
    }
}

/// Workspace limit for an algorithm (bytes).
const WS_LIMIT: usize = 1 << 30;

impl GpuNet {
    pub fn new(net: &FusedNet, dev: &CudaDevice) -> Result<GpuNet> {
        let stream = dev.cuda_stream();
        let mut handle = std::ptr::null_mut();
        ok(unsafe { cd::cudnnCreate(&mut handle) }, "cudnnCreate")?;
        let state = State {
            handle,
            relu: ADesc::new(cd::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU)?,
            plans: HashMap::new(),
            ws: None,
            saved: None,
        };
        ok(
            unsafe { cd::cudnnSetStream(handle, stream.cu_stream() as cd::cudaStream_t) },
            "cudnnSetStream",
        )?;
        let mut id = 0;
        let mut conv = |f: &FConv| {
            id += 1;
            GConv::new(f, id, &stream)
        };
        let stem = conv(&net.stem)?;
        let mut blocks = Vec::with_capacity(net.blocks.len());
        for b in &net.blocks {
            blocks.push(GBlock {
                stage: b.stage,
                convs: b.convs.iter().map(&mut conv).collect::<Result<_>>()?,
                down: b.down.as_ref().map(&mut conv).transpose()?,
            });
        }
        let k = net.fc_b.len();
        let d = net.fc_w.len() / k.max(1);
        let device = candle_core::Device::Cuda(dev.clone());
        let fc_w = Tensor::from_slice(&net.fc_w, (k, d), &device)?;
        Ok(GpuNet {
            stem,
            maxpool: net.maxpool,
            blocks,
            fc_wt: fc_w.t()?.contiguous()?,
            fc_w,
            fc_b: Tensor::from_slice(&net.fc_b, k, &device)?,
            tf32: tf32_allowed(),
            fuse: std::env::var_os("SEMCON_CUDNN_UNFUSED").is_none(),
            stream,
            state: Mutex::new(state),
            grad_lock: Mutex::new(()),
        })
    }

    /// "cudnn" or "cudnn-tf32", for reports.
    pub fn math(&self) -> &'static str {
        if self.tf32 {
            "cudnn-tf32"
        } else {
            "cudnn"
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| candle_core::Error::Msg("GPU network state poisoned".into()))
    }

    /// Features at a tap for normalised inputs `[N, C, H, W]` on this GPU.
    pub fn features(&self, xp: &Tensor, tap: Tap) -> Result<Tensor> {
        let map = xp.contiguous()?.apply_op1_no_bwd(&Forward {
            net: self,
            tap,
            keep: false,
        })?;
        let pooled = map.mean((2, 3))?;
        match tap {
            Tap::Logits => pooled.matmul(&self.fc_wt)?.broadcast_add(&self.fc_b),
            _ => Ok(pooled),
        }
    }

    /// Mean cross-entropy (a scalar tensor) and its gradient w.r.t. the
    /// normalised input, for one-hot labels `[N, K]` (f32) on this GPU.
    pub fn loss_and_grad(&self, xp: &Tensor, onehot: &Tensor) -> Result<(Tensor, Tensor)> {
        let _one = self
            .grad_lock
            .lock()
            .map_err(|_| candle_core::Error::Msg("GPU gradient lock poisoned".into()))?;
        let map = xp.contiguous()?.apply_op1_no_bwd(&Forward {
            net: self,
            tap: Tap::Logits,
            keep: true,
        })?;
        let (n, d, h, w) = map.dims4()?;
        let logits = map
            .mean((2, 3))?
            .matmul(&self.fc_wt)?
            .broadcast_add(&self.fc_b)?;
        let lsm = candle_nn::ops::log_softmax(&logits, 1)?;
        let loss = (lsm.mul(onehot)?.sum_all()? * (-1.0 / n as f64))?;
        let dlog = ((lsm.exp()? - onehot)? * (1.0 / n as f64))?;
        let gmap = (dlog.matmul(&self.fc_w)? * (1.0 / (h * w) as f64))?
            .reshape((n, d, 1, 1))?
            .broadcast_as((n, d, h, w))?
            .contiguous()?;
        let gx = gmap.apply_op1_no_bwd(&Backward { net: self })?;
        Ok((loss, gx))
    }

    fn workspace(&self, st: &mut State, bytes: usize) -> Result<(Ptr, usize)> {
        if bytes == 0 {
            return Ok((std::ptr::null_mut(), 0));
        }
        if st.ws.as_ref().is_none_or(|w| w.len() < bytes) {
            st.ws = None;
            st.ws = Some(drv(self.stream.alloc_zeros::<u8>(bytes))?);
        }
        let ws = st.ws.as_ref().expect("allocated above");
        Ok((ptr(ws, &self.stream), ws.len()))
    }

    fn set_math(&self, cv: &GConv, math: cd::cudnnMathType_t) -> Result<()> {
        ok(
            unsafe { cd::cudnnSetConvolutionMathType(cv.cdesc.0, math) },
            "cudnnSetConvolutionMathType",
        )
    }

    fn math_ok(&self, m: cd::cudnnMathType_t) -> bool {
        self.tf32 || m == cd::cudnnMathType_t::CUDNN_FMA_MATH
    }

    fn base_math(&self) -> cd::cudnnMathType_t {
        if self.tf32 {
            cd::cudnnMathType_t::CUDNN_DEFAULT_MATH
        } else {
            cd::cudnnMathType_t::CUDNN_FMA_MATH
        }
    }

    /// The fastest of cudnnFind's results (algorithm, status, math type,
    /// workspace bytes; fastest first) that ran under our math type within
    /// the workspace limit; failing that, the fastest that ran, under our
    /// math type.
    fn pick<A: Copy>(
        &self,
        results: impl Iterator<Item = (A, cd::cudnnStatus_t, cd::cudnnMathType_t, usize)> + Clone,
        what: &str,
        cv: &GConv,
        (n, h, w): (usize, usize, usize),
    ) -> Result<(A, cd::cudnnMathType_t, usize)> {
        let ran = |&(_, s, _, mem): &(A, cd::cudnnStatus_t, cd::cudnnMathType_t, usize)| {
            s == cd::cudnnStatus_t::CUDNN_STATUS_SUCCESS && mem <= WS_LIMIT
        };
        results
            .clone()
            .find(|r| ran(r) && self.math_ok(r.2))
            .map(|(a, _, m, mem)| (a, m, mem))
            .or_else(|| {
                results
                    .filter(ran)
                    .map(|(a, _, _, mem)| (a, self.base_math(), mem))
                    .next()
            })
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "cuDNN has no usable {what} algorithm for a {}x{} convolution of {n}x{}x{h}x{w}",
                    cv.kh, cv.kw, cv.c
                ))
            })
    }

    /// The plan for `cv` on inputs `[n, cv.c, h, w]`, measured on first use.
    fn plan(
        &self,
        st: &mut State,
        cv: &GConv,
        n: usize,
        h: usize,
        w: usize,
        bwd: bool,
    ) -> Result<()> {
        let key = (cv.id, n, h, w);
        if !st.plans.contains_key(&key) {
            let (oh, ow) = cv.out_hw(h, w)?;
            let x = TDesc::new(n, cv.c, h, w)?;
            let y = TDesc::new(n, cv.o, oh, ow)?;
            self.set_math(cv, self.base_math())?;
            let mut perf: [cd::cudnnConvolutionFwdAlgoPerf_t; 16] = unsafe { std::mem::zeroed() };
            let mut cnt = 0;
            ok(
                unsafe {
                    cd::cudnnFindConvolutionForwardAlgorithm(
                        st.handle,
                        x.0,
                        cv.fdesc.0,
                        cv.cdesc.0,
                        y.0,
                        perf.len() as i32,
                        &mut cnt,
                        perf.as_mut_ptr(),
                    )
                },
                "cudnnFindConvolutionForwardAlgorithm",
            )?;
            let results = perf[..cnt.max(0) as usize]
                .iter()
                .map(|r| (r.algo, r.status, r.mathType, r.memory));
            let pick = self.pick(results, "forward", cv, (n, h, w))?;
            st.plans.insert(
                key,
                Plan {
                    x,
                    y,
                    fwd: pick,
                    bwd: None,
                    fused: self.fuse,
                },
            );
        }
        if bwd && st.plans[&key].bwd.is_none() {
            self.set_math(cv, self.base_math())?;
            let p = &st.plans[&key];
            let mut perf: [cd::cudnnConvolutionBwdDataAlgoPerf_t; 16] =
                unsafe { std::mem::zeroed() };
            let mut cnt = 0;
            ok(
                unsafe {
                    cd::cudnnFindConvolutionBackwardDataAlgorithm(
                        st.handle,
                        cv.fdesc.0,
                        p.y.0,
                        cv.cdesc.0,
                        p.x.0,
                        perf.len() as i32,
                        &mut cnt,
                        perf.as_mut_ptr(),
                    )
                },
                "cudnnFindConvolutionBackwardDataAlgorithm",
            )?;
            let results = perf[..cnt.max(0) as usize]
                .iter()
                .map(|r| (r.algo, r.status, r.mathType, r.memory));
            let pick = self.pick(results, "backward-data", cv, (n, h, w))?;
            st.plans.get_mut(&key).expect("inserted above").bwd = Some(pick);
        }
        Ok(())
    }

    /// y = act(conv(x) + bias (+ z)), a new activation map.
    fn conv_fwd(
        &self,
        st: &mut State,
        cv: &GConv,
        x: Ptr,
        (n, h, w): (usize, usize, usize),
        z: Option<&Act>,
        relu: bool,
    ) -> Result<Act> {
        self.plan(st, cv, n, h, w, false)?;
        let key = (cv.id, n, h, w);
        let (oh, ow) = cv.out_hw(h, w)?;
        let y = Act::new(&self.stream, (n, cv.o, oh, ow))?;
        if let Some(z) = z {
            if z.dims != y.dims {
                bail!(
                    "residual shape {:?} does not match the convolution's output {:?}",
                    z.dims,
                    y.dims
                )
            }
        }
        let (algo, math, wsz) = st.plans[&key].fwd;
        let (ws, wlen) = self.workspace(st, wsz)?;
        self.set_math(cv, math)?;
        let (wp, bp, yp) = (
            ptr(&cv.w, &self.stream),
            ptr(&cv.b, &self.stream),
            ptr(&y.buf, &self.stream),
        );
        let zp = z.map(|z| ptr(&z.buf, &self.stream));
        let p = &st.plans[&key];
        if relu && p.fused {
            let alpha2 = if z.is_some() { ONE } else { ZERO };
            let s = unsafe {
                cd::cudnnConvolutionBiasActivationForward(
                    st.handle,
                    sc(&ONE),
                    p.x.0,
                    x,
                    cv.fdesc.0,
                    wp,
                    cv.cdesc.0,
                    algo,
                    ws,
                    wlen,
                    sc(&alpha2),
                    p.y.0,
                    zp.unwrap_or(yp),
                    cv.bdesc.0,
                    bp,
                    st.relu.0,
                    p.y.0,
                    yp,
                )
            };
            if !unsupported(s) {
                ok(s, "cudnnConvolutionBiasActivationForward")?;
                return Ok(y);
            }
            // This algorithm does not take the fused call: three calls from now on.
            st.plans.get_mut(&key).expect("planned").fused = false;
        }
        let p = &st.plans[&key];
        let beta = match zp {
            Some(zp) => {
                ok(
                    unsafe {
                        cd::cudnnAddTensor(st.handle, sc(&ONE), p.y.0, zp, sc(&ZERO), p.y.0, yp)
                    },
                    "cudnnAddTensor",
                )?;
                ONE
            }
            None => ZERO,
        };
        ok(
            unsafe {
                cd::cudnnConvolutionForward(
                    st.handle,
                    sc(&ONE),
                    p.x.0,
                    x,
                    cv.fdesc.0,
                    wp,
                    cv.cdesc.0,
                    algo,
                    ws,
                    wlen,
                    sc(&beta),
                    p.y.0,
                    yp,
                )
            },
            "cudnnConvolutionForward",
        )?;
        ok(
            unsafe { cd::cudnnAddTensor(st.handle, sc(&ONE), cv.bdesc.0, bp, sc(&ONE), p.y.0, yp) },
            "cudnnAddTensor (bias)",
        )?;
        if relu {
            ok(
                unsafe {
                    cd::cudnnActivationForward(
                        st.handle,
                        st.relu.0,
                        sc(&ONE),
                        p.y.0,
                        yp,
                        sc(&ZERO),
                        p.y.0,
                        yp,
                    )
                },
                "cudnnActivationForward",
            )?;
        }
        Ok(y)
    }

    /// dx (= or +=, by `beta`) the input gradient of `cv` for dy; `dx` has the
    /// shape of the convolution's input `[n, cv.c, h, w]`.
    fn conv_bwd(&self, st: &mut State, cv: &GConv, dy: Ptr, dx: &Act, beta: f32) -> Result<()> {
        let (n, _, h, w) = dx.dims;
        self.plan(st, cv, n, h, w, true)?;
        let key = (cv.id, n, h, w);
        let (algo, math, wsz) = st.plans[&key].bwd.expect("planned above");
        let (ws, wlen) = self.workspace(st, wsz)?;
        self.set_math(cv, math)?;
        let p = &st.plans[&key];
        ok(
            unsafe {
                cd::cudnnConvolutionBackwardData(
                    st.handle,
                    sc(&ONE),
                    cv.fdesc.0,
                    ptr(&cv.w, &self.stream),
                    p.y.0,
                    dy,
                    cv.cdesc.0,
                    algo,
                    ws,
                    wlen,
                    sc(&beta),
                    p.x.0,
                    ptr(&dx.buf, &self.stream),
                )
            },
            "cudnnConvolutionBackwardData",
        )
    }

    /// g := g * (y > 0), in place (`g` has `y`'s shape).
    fn relu_bwd(&self, st: &State, y: &Act, g: Ptr) -> Result<()> {
        let yp = ptr(&y.buf, &self.stream);
        ok(
            unsafe {
                cd::cudnnActivationBackward(
                    st.handle,
                    st.relu.0,
                    sc(&ONE),
                    y.desc.0,
                    yp,
                    y.desc.0,
                    g,
                    y.desc.0,
                    yp,
                    sc(&ZERO),
                    y.desc.0,
                    g,
                )
            },
            "cudnnActivationBackward",
        )
    }

    fn pool_desc() -> Result<PDesc> {
        let d = PDesc::create()?;
        ok(
            unsafe {
                cd::cudnnSetPooling2dDescriptor(
                    d.0,
                    cd::cudnnPoolingMode_t::CUDNN_POOLING_MAX,
                    cd::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN,
                    3,
                    3,
                    1,
                    1,
                    2,
                    2,
                )
            },
            "pooling descriptor",
        )?;
        Ok(d)
    }

    /// torchvision's `MaxPool2d(3, 2, 1)`.
    fn max_pool(&self, st: &State, x: &Act) -> Result<Act> {
        let (n, c, h, w) = x.dims;
        let y = Act::new(&self.stream, (n, c, (h - 1) / 2 + 1, (w - 1) / 2 + 1))?;
        let pd = Self::pool_desc()?;
        ok(
            unsafe {
                cd::cudnnPoolingForward(
                    st.handle,
                    pd.0,
                    sc(&ONE),
                    x.desc.0,
                    ptr(&x.buf, &self.stream),
                    sc(&ZERO),
                    y.desc.0,
                    ptr(&y.buf, &self.stream),
                )
            },
            "cudnnPoolingForward",
        )?;
        Ok(y)
    }

    /// The trunk: the last stage's map (or the tapped stage's), keeping what
    /// the backward pass needs when `keep`.
    fn trunk(
        &self,
        x: Ptr,
        dims: (usize, usize, usize, usize),
        tap: Tap,
        keep: bool,
    ) -> Result<Act> {
        let (n, c, h, w) = dims;
        if c != self.stem.c {
            bail!(
                "GPU network: input has {c} channels, the stem takes {}",
                self.stem.c
            )
        }
        let mut st = self.lock()?;
        let st = &mut *st;
        st.saved = None;
        let stem = self.conv_fwd(st, &self.stem, x, (n, h, w), None, true)?;
        let mut saved = Saved {
            stem: None,
            pooled: None,
            blocks: Vec::new(),
            last: None,
            input: dims,
        };
        let mut y = if self.maxpool {
            let p = self.max_pool(st, &stem)?;
            if keep {
                saved.stem = Some(stem);
                saved.pooled = Some(p.copy(&self.stream)?);
            }
            p
        } else {
            stem
        };
        for (bi, blk) in self.blocks.iter().enumerate() {
            let input = y;
            let (_, _, ih, iw) = input.dims;
            let inp = ptr(&input.buf, &self.stream);
            let shortcut = match &blk.down {
                Some(d) => Some(self.conv_fwd(st, d, inp, (n, ih, iw), None, false)?),
                None => None,
            };
            let last = blk.convs.len() - 1;
            let mut cur: Option<Act> = None;
            let mut mids = Vec::new();
            for (i, cv) in blk.convs.iter().enumerate() {
                let src = cur.as_ref().unwrap_or(&input);
                let (_, _, sh, sw) = src.dims;
                let sp = ptr(&src.buf, &self.stream);
                let z = (i == last).then(|| shortcut.as_ref().unwrap_or(&input));
                let out = self.conv_fwd(st, cv, sp, (n, sh, sw), z, true)?;
                if let Some(prev) = cur.replace(out) {
                    mids.push(prev);
                }
            }
            y = cur.expect("a block has convolutions");
            if keep {
                saved.blocks.push((input, mids));
            }
            let stage_ends = self.blocks.get(bi + 1).is_none_or(|b| b.stage != blk.stage);
            if stage_ends && tap == Tap::Layer(blk.stage) && !keep {
                return Ok(y);
            }
        }
        if keep {
            saved.last = Some(y.copy(&self.stream)?);
            st.saved = Some(saved);
        }
        Ok(y)
    }

    /// The input gradient for `g`, the gradient w.r.t. the last map of the
    /// forward pass that kept its activations.
    fn trunk_bwd(&self, g: Ptr, gdims: (usize, usize, usize, usize)) -> Result<Act> {
        let mut st = self.lock()?;
        let st = &mut *st;
        let saved = st.saved.take().ok_or_else(|| {
            candle_core::Error::Msg("GPU backward without a kept forward pass".into())
        })?;
        let mut out = saved.last.expect("kept with the blocks");
        if out.dims != gdims {
            bail!("GPU backward: gradient {gdims:?} for a map {:?}", out.dims)
        }
        // The gradient lives in `g` (candle's buffer) until the first block's
        // input gradient is allocated here.
        let mut gbuf: Option<Act> = None;
        let mut gp_ptr = g;
        for (blk, (input, mids)) in self.blocks.iter().zip(saved.blocks).rev() {
            self.relu_bwd(st, &out, gp_ptr)?;
            // gradient at the block's output, before its ReLU: gp_ptr
            let nconv = blk.convs.len();
            let mut gcur = gp_ptr;
            let mut keep_alive = Vec::new();
            for i in (1..nconv).rev() {
                let m = &mids[i - 1];
                let gm = Act::new(&self.stream, m.dims)?;
                self.conv_bwd(st, &blk.convs[i], gcur, &gm, ZERO)?;
                gcur = ptr(&gm.buf, &self.stream);
                self.relu_bwd(st, m, gcur)?;
                keep_alive.push(gm);
            }
            let gin = Act::new(&self.stream, input.dims)?;
            self.conv_bwd(st, &blk.convs[0], gcur, &gin, ZERO)?;
            match &blk.down {
                Some(d) => self.conv_bwd(st, d, gp_ptr, &gin, ONE)?,
                None => ok(
                    unsafe {
                        cd::cudnnAddTensor(
                            st.handle,
                            sc(&ONE),
                            gin.desc.0,
                            gp_ptr,
                            sc(&ONE),
                            gin.desc.0,
                            ptr(&gin.buf, &self.stream),
                        )
                    },
                    "cudnnAddTensor (residual gradient)",
                )?,
            }
            drop(keep_alive);
            gp_ptr = ptr(&gin.buf, &self.stream);
            gbuf = Some(gin);
            out = input;
        }
        if let (Some(stem), Some(pooled)) = (saved.stem, saved.pooled) {
            let gs = Act::new(&self.stream, stem.dims)?;
            let pd = Self::pool_desc()?;
            ok(
                unsafe {
                    cd::cudnnPoolingBackward(
                        st.handle,
                        pd.0,
                        sc(&ONE),
                        pooled.desc.0,
                        ptr(&pooled.buf, &self.stream),
                        pooled.desc.0,
                        gp_ptr,
                        stem.desc.0,
                        ptr(&stem.buf, &self.stream),
                        sc(&ZERO),
                        stem.desc.0,
                        ptr(&gs.buf, &self.stream),
                    )
                },
                "cudnnPoolingBackward",
            )?;
            gp_ptr = ptr(&gs.buf, &self.stream);
            gbuf = Some(gs);
            out = stem;
        }
        self.relu_bwd(st, &out, gp_ptr)?;
        let gx = Act::new(&self.stream, saved.input)?;
        self.conv_bwd(st, &self.stem, gp_ptr, &gx, ZERO)?;
        drop(gbuf);
        Ok(gx)
    }
}

fn input_ptr(s: &CudaStorage, l: &Layout, st: &CudaStream) -> Result<Ptr> {
    let (start, _) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("GPU network: non-contiguous input".into()))?;
    let base = ptr(s.as_cuda_slice::<f32>()?, st);
    Ok(unsafe { (base as *mut f32).add(start) } as Ptr)
}

struct Forward<'a> {
    net: &'a GpuNet,
    tap: Tap,
    keep: bool,
}

impl CustomOp1 for Forward<'_> {
    fn name(&self) -> &'static str {
        "semcon-cudnn-forward"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("the cuDNN network runs on the GPU only")
    }
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let x = input_ptr(s, l, &self.net.stream)?;
        let y = self.net.trunk(x, l.shape().dims4()?, self.tap, self.keep)?;
        Ok((
            CudaStorage::wrap_cuda_slice(y.buf, s.device.clone()),
            Shape::from(y.dims),
        ))
    }
}

struct Backward<'a> {
    net: &'a GpuNet,
}

impl CustomOp1 for Backward<'_> {
    fn name(&self) -> &'static str {
        "semcon-cudnn-backward"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("the cuDNN network runs on the GPU only")
    }
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let g = input_ptr(s, l, &self.net.stream)?;
        let gx = self.net.trunk_bwd(g, l.shape().dims4()?)?;
        Ok((
            CudaStorage::wrap_cuda_slice(gx.buf, s.device.clone()),
            Shape::from(gx.dims),
        ))
    }
}
