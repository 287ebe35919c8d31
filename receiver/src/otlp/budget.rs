//! The memory the requests being read and decoded may take, together.
//!
//! A request reserves its body's size (or the largest body allowed, when the
//! size is not known) before its body is read; decoding then grows the
//! reservation as it allocates, and stops as soon as the budget has no room
//! (the request is refused, retryably, or for good if it alone would not
//! fit). The reservation is held until the pipelines have taken the data.
//! So however many clients send at once, and whatever they send, the
//! receiver holds at most the budget (plus one growth step per request).

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::Duration,
};

use bytes::Buf;
use flowtel_core::memory::AllocationMeter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget of one `otlp` receiver: every request in flight, both protocols.
pub const IN_FLIGHT_BYTES: u64 = 64 << 20;
/// The budget is counted in units of this many bytes.
const UNIT: u64 = 1024;
/// How much a reservation grows at a time while decoding.
const GROWTH: u64 = 1 << 20;

/// Why a request did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// Other requests hold the budget now: retry later.
    Busy,
    /// This request alone takes more than the whole budget.
    TooLarge,
}

/// The shared budget.
#[derive(Clone)]
pub(crate) struct RequestBudget {
    semaphore: Arc<Semaphore>,
    total_units: u32,
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

impl RequestBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: u64) -> Self {
        let total_units = units(bytes).max(1);
        RequestBudget { semaphore: Arc::new(Semaphore::new(total_units as usize)), total_units }
    }

    /// Reserves `bytes` for a request, waiting at most `wait` for room.
    pub(crate) async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, NoRoom> {
        let wanted = units(bytes).min(self.total_units).max(1);
        match tokio::time::timeout(wait, self.semaphore.clone().acquire_many_owned(wanted)).await {
            Ok(Ok(permit)) => Ok(Reservation { permit, budget: self.clone() }),
            _ => Err(NoRoom::Busy),
        }
    }

    /// Reserves `bytes` if there is room now.
    pub(crate) fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let wanted = units(bytes).min(self.total_units).max(1);
        let permit = self.semaphore.clone().try_acquire_many_owned(wanted).ok()?;
        Some(Reservation { permit, budget: self.clone() })
    }

    /// Bytes free now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> u64 {
        self.semaphore.available_permits() as u64 * UNIT
    }
}

/// Room held for one request until it is dropped.
pub(crate) struct Reservation {
    permit: OwnedSemaphorePermit,
    budget: RequestBudget,
}

impl Reservation {
    fn held(&self) -> u64 {
        self.permit.num_permits() as u64 * UNIT
    }

    /// Runs `decode` (synchronous, on this thread) with a meter that grows
    /// the reservation as the thread allocates; `decode` reads its input
    /// through [`MeteredBuf`] or [`MeteredRead`], which end the input once the
    /// budget has no room. `Err` says why the decode was stopped.
    pub(crate) fn metered<T>(&mut self, decode: impl FnOnce(&Meter) -> T) -> Result<T, NoRoom> {
        let meter = Meter {
            allocation: AllocationMeter::start(),
            held: Cell::new(self.held()),
            total: u64::from(self.budget.total_units) * UNIT,
            extra: RefCell::new(Vec::new()),
            semaphore: &self.budget.semaphore,
            stopped: Cell::new(None),
        };
        let decoded = decode(&meter);
        for extra in meter.extra.into_inner() {
            self.permit.merge(extra);
        }
        match meter.stopped.get() {
            Some(why) => Err(why),
            None => Ok(decoded),
        }
    }
}

/// Watches one decode's allocations against the budget.
pub(crate) struct Meter<'a> {
    allocation: AllocationMeter,
    held: Cell<u64>,
    total: u64,
    extra: RefCell<Vec<OwnedSemaphorePermit>>,
    semaphore: &'a Arc<Semaphore>,
    stopped: Cell<Option<NoRoom>>,
}

impl Meter<'_> {
    /// Whether decoding may go on; grows the reservation when needed.
    pub(crate) fn room(&self) -> bool {
        if self.stopped.get().is_some() {
            return false;
        }
        let allocated = self.allocation.allocated();
        if allocated <= self.held.get() {
            return true;
        }
        if allocated > self.total {
            self.stopped.set(Some(NoRoom::TooLarge));
            return false;
        }
        let grow = (allocated - self.held.get()).max(GROWTH).min(self.total);
        match self.semaphore.clone().try_acquire_many_owned(units(grow)) {
            Ok(permit) => {
                self.held.set(self.held.get() + u64::from(units(grow)) * UNIT);
                self.extra.borrow_mut().push(permit);
                true
            }
            Err(_) => {
                self.stopped.set(Some(NoRoom::Busy));
                false
            }
        }
    }
}

/// A protobuf input that ends early once the budget has no room, so the
/// decoder stops (with an error) before it allocates more.
pub(crate) struct MeteredBuf<'a, B> {
    inner: B,
    meter: &'a Meter<'a>,
}

impl<'a, B: Buf> MeteredBuf<'a, B> {
    /// Reads `inner` under `meter`.
    pub(crate) fn new(inner: B, meter: &'a Meter<'a>) -> Self {
        MeteredBuf { inner, meter }
    }
}

impl<B: Buf> Buf for MeteredBuf<'_, B> {
    fn remaining(&self) -> usize {
        if self.meter.room() { self.inner.remaining() } else { 0 }
    }

    fn chunk(&self) -> &[u8] {
        if self.meter.room() { self.inner.chunk() } else { &[] }
    }

    fn advance(&mut self, count: usize) {
        self.inner.advance(count.min(self.inner.remaining()));
    }
}

/// A JSON (or decompression) input that fails once the budget has no room.
pub(crate) struct MeteredRead<'a, R> {
    inner: R,
    meter: &'a Meter<'a>,
}

impl<'a, R: std::io::Read> MeteredRead<'a, R> {
    /// Reads `inner` under `meter`.
    pub(crate) fn new(inner: R, meter: &'a Meter<'a>) -> Self {
        MeteredRead { inner, meter }
    }
}

impl<R: std::io::Read> std::io::Read for MeteredRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.meter.room() {
            return Err(std::io::Error::other("the receiver's memory budget has no room"));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_wait_for_room_and_give_it_back() {
        let budget = RequestBudget::new(4 * UNIT);
        let first = budget.reserve(3 * UNIT, Duration::from_millis(10)).await.unwrap();
        assert_eq!(budget.available(), UNIT);
        assert_eq!(budget.reserve(2 * UNIT, Duration::from_millis(10)).await.err(), Some(NoRoom::Busy));
        drop(first);
        let whole = budget.reserve(100 * UNIT, Duration::from_millis(10)).await.unwrap();
        assert_eq!(whole.held(), 4 * UNIT, "a request larger than the budget takes all of it");
        drop(whole);
        assert_eq!(budget.available(), 4 * UNIT);
    }

    #[tokio::test]
    async fn a_decode_without_the_counting_allocator_is_never_stopped() {
        // Unit tests run on the system allocator: the meter sees nothing.
        let budget = RequestBudget::new(UNIT);
        let mut reservation = budget.reserve(UNIT, Duration::from_millis(10)).await.unwrap();
        let decoded = reservation.metered(|meter| {
            let mut buf = MeteredBuf::new(&b"abc"[..], meter);
            let mut out = Vec::new();
            while buf.has_remaining() {
                out.push(buf.get_u8());
            }
            out
        });
        assert_eq!(decoded, Ok(b"abc".to_vec()));
    }
}
