//! `k` and `kdD`: a k x k conv (odd k) dilated by D (1 when not written), padding D(k-1)/2, with
//! bias; `conv{k}.*` or `conv{k}d{D}.*` in the `state_dict`.

use super::{Choice, Forward, Kind, ParamShape};
use crate::engine::{Backend, ConvGeometry, Tape, Tensor};
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conv {
    pub kernel: usize,
    pub dilation: usize,
}

impl Conv {
    pub const fn plain(kernel: usize) -> Self {
        Conv {
            kernel,
            dilation: 1,
        }
    }

    fn geometry(&self) -> ConvGeometry {
        ConvGeometry {
            kernel: self.kernel,
            dilation: self.dilation,
            groups: 1,
        }
    }
}

/// `5`, `3d2`; `None` for a token that does not start with digits.
pub(super) fn parse(token: &str) -> Option<std::result::Result<Choice, String>> {
    let (kernel, dilation) = match token.split_once('d') {
        Some((kernel, dilation)) => (kernel, Some(dilation)),
        None => (token, None),
    };
    if kernel.is_empty() || !kernel.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let Ok(kernel) = kernel.parse::<u16>() else {
        return Some(Err("not a kernel size".into()));
    };
    let dilation = match dilation.map(str::parse::<u16>) {
        None => 1,
        Some(Ok(dilation)) if dilation >= 2 => dilation,
        Some(Ok(1)) => {
            return Some(Err(format!(
                "dilation 1 is the plain conv: write '{kernel}'"
            )))
        }
        Some(_) => {
            return Some(Err(
                "a dilation must be a whole number of at least 2 (kdD, e.g. 3d2)".into(),
            ))
        }
    };
    Some(Ok(Choice::Conv(Conv {
        kernel: kernel as usize,
        dilation: dilation as usize,
    })))
}

/// `conv5` or `conv3d2`, as `token` writes them after `conv`.
pub(super) fn from_module(module: &str) -> Option<Choice> {
    let token = module.strip_prefix("conv")?;
    match parse(token)? {
        Ok(choice) if choice.module().as_deref() == Some(module) => Some(choice),
        _ => None,
    }
}

impl Kind for Conv {
    fn token(&self) -> String {
        match self.dilation {
            1 => self.kernel.to_string(),
            d => format!("{}d{d}", self.kernel),
        }
    }

    fn label(&self) -> String {
        let k = self.kernel;
        match self.dilation {
            1 => format!("{k}x{k}"),
            d => format!("{k}x{k} d{d}"),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.kernel.is_multiple_of(2) {
            return Err("a kernel size must be odd (same padding puts k/2 on each side)".into());
        }
        Ok(())
    }

    fn receptive_field(&self) -> usize {
        self.dilation * (self.kernel - 1) + 1
    }

    fn module(&self) -> Option<String> {
        Some(format!("conv{}", self.token()))
    }

    fn parameters(&self, in_channels: usize, channels: usize) -> Vec<ParamShape> {
        let k = self.kernel;
        vec![
            ParamShape::new("weight", vec![channels, in_channels, k, k]),
            ParamShape::new("bias", vec![channels]),
        ]
    }

    fn output_parameter(&self) -> Option<&'static str> {
        Some("weight")
    }

    fn exported_module(&self) -> Option<&'static str> {
        Some("conv")
    }

    fn operations(&self, in_channels: usize, channels: usize, side: usize) -> f64 {
        (channels * in_channels * self.kernel * self.kernel * side * side) as f64
    }
}

impl Forward for Conv {
    fn forward<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Tensor<B>> {
        tape.conv2d_with(x, &params[0], &params[1], self.geometry())
    }

    fn forward_relu_pool<B: Backend>(
        &self,
        tape: &Tape<'_, B>,
        x: &Tensor<B>,
        params: &[Tensor<B>],
    ) -> Result<Option<Tensor<B>>> {
        let fused = tape.conv_relu_pool_with(x, &params[0], &params[1], 0, self.geometry())?;
        Ok(Some(fused))
    }
}
