//! `inmail ingest`: messages read by the caller analysed, qualified and
//! applied to the store, batch by batch, through the same step as the
//! daemon's workers ([`crate::pipeline::process`]).

use crate::analysis::Analyzer;
use crate::pipeline::process_input;
use crate::rules::RuleSet;
use crate::store::{BounceInput, RecipientOutcome, Store, StoreError};
use chrono::Utc;

/// One message to ingest.
pub struct Message {
    /// Where it came from, as events and outcomes name it.
    pub source: String,
    pub data: Vec<u8>,
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub messages: usize,
    pub recipients: usize,
    /// Recipients of messages processed before.
    pub duplicates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller's `on_batch` failed (writing the results).
    #[error(transparent)]
    Output(#[from] std::io::Error),
    #[error("the analysis thread failed: {0}")]
    Analysis(tokio::task::JoinError),
}

/// Analyses and qualifies `messages` on a blocking thread while the previous
/// batch is applied; each batch of `batch_size` messages is applied in a
/// transaction of its own, then handed to `on_batch` with one outcome per
/// recipient, in order. Stops at the first error.
pub async fn ingest<I>(
    store: &Store,
    analyzer: Analyzer,
    rules: RuleSet,
    messages: I,
    batch_size: usize,
    mut on_batch: impl FnMut(&[BounceInput], &[RecipientOutcome]) -> std::io::Result<()>,
) -> Result<IngestSummary, IngestError>
where
    I: IntoIterator<Item = Message> + Send + 'static,
{
    let batch_size = batch_size.max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<BounceInput>>(2);
    let producer = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(batch_size);
        for m in messages {
            batch.push(process_input(&analyzer, &rules, &m.data, m.source));
            if batch.len() == batch_size && tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                // The applying side stopped on an error, which it reports.
                return;
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
    });
    let mut summary = IngestSummary::default();
    while let Some(batch) = rx.recv().await {
        let outcomes = store.apply_batch(&batch, Utc::now()).await?;
        on_batch(&batch, &outcomes)?;
        summary.messages += batch.len();
        summary.recipients += batch
            .iter()
            .map(|i| i.analysis.recipients.len())
            .sum::<usize>();
        summary.duplicates += outcomes.iter().filter(|o| o.duplicate).count();
    }
    producer.await.map_err(IngestError::Analysis)?;
    Ok(summary)
}
