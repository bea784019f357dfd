//! Write access to the f32 data of several tensors at once, for the optimizer updates that change
//! a parameter and its moments in one pass.
//!
//! candle hands out a tensor's storage for writing only to an in-place op, one tensor per op; so
//! each tensor's write lock is taken by an `InplaceOp1` whose forward takes the next one, and the
//! innermost runs the update while all the locks are held.

use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp1, Layout, Result, Storage, Tensor};

/// Runs `f` on the data of `targets` (contiguous f32 CPU tensors, in that order) while holding
/// their write locks. `targets` and `reads` (tensors `f` reads through their own locks) must all
/// have distinct storages: a shared one would deadlock or alias, and is refused.
pub(crate) fn with_mut<R>(
    op: &str,
    targets: &[&Tensor],
    reads: &[&Tensor],
    f: impl FnOnce(&mut [&mut [f32]]) -> Result<R>,
) -> Result<R> {
    let ids: Vec<usize> = targets.iter().chain(reads).map(|t| storage_id(t)).collect();
    for (i, a) in ids.iter().enumerate() {
        if ids[i + 1..].contains(a) {
            bail!("{op}: the tensors updated in place must not share storage with each other or with the gradient");
        }
    }
    let mut f = Some(f);
    let mut result = None;
    let mut run = |slices: &mut [&mut [f32]]| -> Result<()> {
        if let Some(f) = f.take() {
            result = Some(f(slices)?);
        }
        Ok(())
    };
    nest(targets, &mut Vec::new(), &mut run)?;
    match result {
        Some(r) => Ok(r),
        None => bail!("{op}: the update did not run"),
    }
}

/// The address of `t`'s storage, which tensors sharing it have in common.
fn storage_id(t: &Tensor) -> usize {
    let (storage, _) = t.storage_and_layout();
    &*storage as *const Storage as usize
}

/// The update, called with the data of every locked tensor.
type Update<'f> = dyn FnMut(&mut [&mut [f32]]) -> Result<()> + 'f;

/// Locks the first of `rest`, records its data and recurses; runs `f` once all are locked.
fn nest(rest: &[&Tensor], views: &mut Vec<(*mut f32, usize)>, f: &mut Update) -> Result<()> {
    match rest.split_first() {
        None => {
            // SAFETY: every pointer and length was taken from a distinct storage (checked by
            // `with_mut`) whose write lock is held by an enclosing `inplace_op1` until this call
            // returns, so the slices are valid, exclusive and do not overlap.
            let mut slices: Vec<&mut [f32]> = views
                .iter()
                .map(|&(ptr, len)| unsafe { std::slice::from_raw_parts_mut(ptr, len) })
                .collect();
            f(&mut slices)
        }
        Some((first, rest)) => first.inplace_op1(&Lock {
            rest,
            views: RefCell::new(views),
            f: RefCell::new(f),
        }),
    }
}

/// One level of [`nest`]: holds the lock of one tensor.
struct Lock<'a, 'f> {
    rest: &'a [&'a Tensor],
    views: RefCell<&'a mut Vec<(*mut f32, usize)>>,
    f: RefCell<&'a mut Update<'f>>,
}

impl InplaceOp1 for Lock<'_, '_> {
    fn name(&self) -> &'static str {
        "lock"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else {
            bail!(
                "in-place update: f32 tensors only, got {:?}",
                storage.dtype()
            );
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("in-place update: contiguous tensors only");
        };
        let data = &mut data[start..end];
        let mut views = self.views.borrow_mut();
        views.push((data.as_mut_ptr(), data.len()));
        nest(self.rest, &mut views, &mut **self.f.borrow_mut())
    }
}
