//! The `batch` processor: holds items until `send_batch_size` of them are
//! there or `timeout` has passed since the first, then sends them on in
//! batches of at most `send_batch_max_size`. Fewer, larger exports are what
//! make OTLP cheap for the backend.

mod config;

use flowtel_core::{Payload, component::Processor};
use tokio::time::Instant;

pub use config::BatchConfig;

/// The `batch` processor (one instance per pipeline).
pub struct BatchProcessor {
    config: BatchConfig,
    pending: Option<Payload>,
    pending_items: usize,
    deadline: Option<Instant>,
}

impl BatchProcessor {
    /// A processor with the given (validated) config.
    pub fn new(config: BatchConfig) -> Self {
        BatchProcessor { config, pending: None, pending_items: 0, deadline: None }
    }

    /// Emits `payload` cut into pieces of at most `send_batch_max_size` items.
    fn emit_split(&self, mut payload: Payload, out: &mut Vec<Payload>) {
        let max = self.config.send_batch_max_size;
        if max > 0 {
            while payload.item_count() > max {
                out.push(payload.split_front(max));
            }
        }
        if !payload.is_empty() {
            out.push(payload);
        }
    }

    /// Emits everything held.
    fn emit_all(&mut self, out: &mut Vec<Payload>) {
        self.deadline = None;
        self.pending_items = 0;
        if let Some(pending) = self.pending.take() {
            self.emit_split(pending, out);
        }
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, payload: Payload, out: &mut Vec<Payload>) {
        if self.config.timeout.is_zero() {
            self.emit_split(payload, out);
            return;
        }
        let items = payload.item_count();
        if items == 0 {
            return;
        }
        match &mut self.pending {
            Some(pending) => {
                if let Err(other) = pending.append(payload) {
                    // A pipeline carries one signal; should another arrive, send it alone.
                    self.emit_split(other, out);
                    return;
                }
            }
            None => {
                self.pending = Some(payload);
                self.deadline = Some(Instant::now() + self.config.timeout);
            }
        }
        self.pending_items += items;
        if self.pending_items < self.config.send_batch_size {
            return;
        }
        if self.config.send_batch_max_size == 0 {
            self.emit_all(out);
            return;
        }
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        // Send batches of send_batch_max_size; keep a remainder below send_batch_size.
        while pending.item_count() >= self.config.send_batch_size {
            out.push(pending.split_front(self.config.send_batch_max_size));
        }
        self.pending_items = pending.item_count();
        if self.pending_items == 0 {
            self.deadline = None;
        } else {
            self.pending = Some(pending);
            self.deadline = Some(Instant::now() + self.config.timeout);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn holds_data(&self) -> bool {
        self.pending.is_some()
    }

    fn passes_encoded(&self) -> bool {
        true
    }

    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Payload>) {
        self.emit_all(out);
    }

    fn flush(&mut self, out: &mut Vec<Payload>) {
        self.emit_all(out);
    }
}

#[cfg(test)]
mod tests;
