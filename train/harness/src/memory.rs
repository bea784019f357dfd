//! Fitting work into the device's memory: a micro-batch's rows, or an evaluation batch, halved
//! until it runs where a card runs out of memory, so one training file and one profile serve an
//! H200 and a 24 GB card (the tokens per step and the evaluation's sums stay the same). Measured
//! on the card itself, so no table of cards goes stale.

/// Whether `e` is the device running out of memory (CUDA's allocator or cuBLAS's workspace), as
/// opposed to any other failure.
pub fn is_out_of_memory(e: &candle_core::Error) -> bool {
    let text = e.to_string();
    ["CUDA_ERROR_OUT_OF_MEMORY", "CUBLAS_STATUS_ALLOC_FAILED"]
        .iter()
        .any(|mark| text.contains(mark))
}

/// The most rows, from `rows` down by halving, at which `probe(rows)` (what training holds at that
/// many rows per micro-batch) runs without running out of `device`'s memory; says so when that is fewer than
/// `rows`. Any other error is returned as it is, and so is running out of memory at one row.
/// What the probes left in the device's memory pool goes back to the driver, so the run's peak
/// is its own, not the failed probe's full card.
pub fn fit_rows(
    device: &candle_core::Device,
    rows: usize,
    mut probe: impl FnMut(usize) -> candle_core::Result<()>,
) -> candle_core::Result<usize> {
    let mut fits = rows.max(1);
    loop {
        match probe(fits) {
            Ok(()) => break,
            Err(e) if fits > 1 && is_out_of_memory(&e) => fits /= 2,
            Err(e) => return Err(e),
        }
    }
    crate::device::release_cached_memory(device)?;
    if fits < rows {
        println!("note: {rows} rows per micro-batch do not fit in the device's memory; {fits} do");
    }
    Ok(fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_of_memory() -> candle_core::Error {
        candle_core::Error::Msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into())
    }

    #[test]
    fn rows_halve_until_they_fit() {
        let mut tried = Vec::new();
        let rows = fit_rows(&candle_core::Device::Cpu, 32, |rows| {
            tried.push(rows);
            if rows > 5 {
                Err(out_of_memory())
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(rows, 4);
        assert_eq!(tried, [32, 16, 8, 4]);
    }

    #[test]
    fn other_errors_and_one_row_out_of_memory_are_returned() {
        let err = fit_rows(&candle_core::Device::Cpu, 8, |_| {
            Err(candle_core::Error::Msg("shape mismatch".into()))
        });
        assert_eq!(err.unwrap_err().to_string(), "shape mismatch");
        let mut tried = Vec::new();
        let err = fit_rows(&candle_core::Device::Cpu, 4, |rows| {
            tried.push(rows);
            Err(out_of_memory())
        });
        assert!(is_out_of_memory(&err.unwrap_err()));
        assert_eq!(tried, [4, 2, 1]);
    }
}
