//! A receiver's proof that what it took is stored: a [`Receipt`] travels
//! with the data through the pipelines (and through the processors that
//! hold data back, like `batch`) until every exporter queue it goes to
//! has it. When the last copy of it is dropped, the receiver waiting on
//! [`ReceiptWait`] learns whether all of them did.
//!
//! Receipts are only issued where a pipeline ends in a persistent sending
//! queue: there an acknowledged request must survive a crash, so the
//! receiver answers once the data is on disk.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::oneshot;

struct Outcome {
    failed: AtomicBool,
    notify: Mutex<Option<oneshot::Sender<bool>>>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        let stored = !self.failed.load(Ordering::Relaxed);
        if let Some(notify) = self.notify.get_mut().ok().and_then(Option::take) {
            let _ = notify.send(stored);
        }
    }
}

/// One copy of a receipt; the data is stored once every copy is dropped
/// and none was marked [`Receipt::failed`]. Cheap to clone.
#[derive(Clone)]
pub struct Receipt(Arc<Outcome>);

impl Receipt {
    /// A receipt and the receiver's wait on it.
    pub fn new() -> (Receipt, ReceiptWait) {
        let (notify, wait) = oneshot::channel();
        (
            Receipt(Arc::new(Outcome { failed: AtomicBool::new(false), notify: Mutex::new(Some(notify)) })),
            ReceiptWait(wait),
        )
    }

    /// Some of the data was not stored (a full queue, a storage error,
    /// shutdown): the receiver should tell its client to retry.
    pub fn failed(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

/// The receiver's side of a [`Receipt`].
pub struct ReceiptWait(oneshot::Receiver<bool>);

impl ReceiptWait {
    /// Whether everything was stored, once every copy of the receipt is gone.
    pub async fn stored(self) -> bool {
        self.0.await.unwrap_or(false)
    }
}

/// Receipts travelling together with data.
pub type Receipts = Vec<Receipt>;

/// Marks every receipt as failed.
pub fn fail_all(receipts: &[Receipt]) {
    receipts.iter().for_each(Receipt::failed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stored_once_every_copy_is_dropped_and_none_failed() {
        let (receipt, wait) = Receipt::new();
        let copy = receipt.clone();
        drop(receipt);
        let waiting = tokio::spawn(wait.stored());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a copy is still held");
        drop(copy);
        assert!(waiting.await.unwrap());

        let (receipt, wait) = Receipt::new();
        receipt.clone().failed();
        drop(receipt);
        assert!(!wait.stored().await);
    }
}
