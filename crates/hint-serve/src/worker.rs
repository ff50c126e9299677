//! Dynamic batching: requests wait in a bounded queue; the model's thread takes the first,
//! waits a few milliseconds for others (up to a number of rows), and serves them together
//! — generation rows of every task with the same settings in one batch. Requests are
//! served in arrival order, all of a batch at once, so none waits behind later ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hint_model::generation::GenerationConfig;
use tokio::sync::oneshot;

use crate::cache::Adaptation;
use crate::engine::{Adapted, Engine, Output, TaskRef};
use crate::error::ServeError;
use crate::metrics::Metrics;

/// What a request asks of the model.
#[derive(Debug)]
pub enum Work {
    /// Make (or find) an adaptation.
    Adapt(TaskRef),
    /// Generate for each input.
    Generate {
        /// The task.
        task: TaskRef,
        /// Input token ids.
        inputs: Vec<Vec<i64>>,
        /// Decoding settings.
        config: GenerationConfig,
    },
    /// Score each input's choices.
    Score {
        /// The task.
        task: TaskRef,
        /// Input token ids.
        inputs: Vec<Vec<i64>>,
        /// Each input's choices' token ids.
        choices: Vec<Vec<Vec<i64>>>,
    },
}

impl Work {
    fn rows(&self) -> usize {
        match self {
            Self::Adapt(_) => 1,
            Self::Generate { inputs, .. } => inputs.len(),
            Self::Score { choices, .. } => choices.iter().map(Vec::len).sum(),
        }
    }
}

/// What the model did.
#[derive(Debug)]
pub enum Done {
    /// An adaptation.
    Adapted(Adapted),
    /// Outputs, in input order.
    Generated(Adapted, Vec<Output>),
    /// Each input's choices' log-likelihoods.
    Scored(Adapted, Vec<Vec<f64>>),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Done, ServeError>>,
}

/// The requests' side of the queue: cheap to clone into every handler.
#[derive(Clone)]
pub struct Queue {
    sender: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    metrics: Metrics,
}

impl Queue {
    /// Queues `work`; the answer comes on the returned receiver. A full queue is
    /// [`ServeError::Busy`] at once (never a wait without bound).
    pub fn submit(
        &self,
        work: Work,
    ) -> Result<oneshot::Receiver<Result<Done, ServeError>>, ServeError> {
        let (reply, receiver) = oneshot::channel();
        // Counted before it is sent: the model's thread may take it at once.
        let depth = self.depth.fetch_add(1, Ordering::SeqCst) + 1;
        self.metrics.queued.set(depth as i64);
        let refused = match self.sender.try_send(Job { work, reply }) {
            Ok(()) => return Ok(receiver),
            Err(TrySendError::Full(_)) => ServeError::Busy {
                queued: self.capacity,
            },
            Err(TrySendError::Disconnected(_)) => ServeError::ShuttingDown,
        };
        let depth = self.depth.fetch_sub(1, Ordering::SeqCst) - 1;
        self.metrics.queued.set(depth as i64);
        Err(refused)
    }
}

/// The model's thread, started: its queue, what `build` returned beside the engine, and
/// the thread.
pub type Started<T> = (Queue, T, std::thread::JoinHandle<()>);

/// Starts the model's thread: `build` makes the engine there (libtorch's model stays on
/// the thread that made it) and returns what the requests' side needs to know, or why it
/// could not. The thread ends once every [`Queue`] is dropped and the queue is empty.
pub fn start<T: Send + 'static, E: Send + 'static>(
    build: impl FnOnce() -> Result<(Engine, T), E> + Send + 'static,
    capacity: usize,
    window: Duration,
    max_rows: usize,
    metrics: Metrics,
) -> std::io::Result<Result<Started<T>, E>> {
    let (sender, receiver) = sync_channel(capacity.max(1));
    let depth = Arc::new(AtomicUsize::new(0));
    let queue = Queue {
        sender,
        depth: Arc::clone(&depth),
        capacity,
        metrics: metrics.clone(),
    };
    let (ready, built) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("hint-model".into())
        .spawn(move || match build() {
            Ok((engine, known)) => {
                let _ = ready.send(Ok(known));
                serve(engine, receiver, depth, window, max_rows.max(1), metrics);
            }
            Err(err) => {
                let _ = ready.send(Err(err));
            }
        })?;
    Ok(match built.recv() {
        Ok(Ok(known)) => Ok((queue, known, thread)),
        Ok(Err(err)) => {
            let _ = thread.join();
            Err(err)
        }
        Err(_) => {
            let _ = thread.join();
            return Err(std::io::Error::other(
                "the model's thread ended while loading",
            ));
        }
    })
}

fn serve(
    mut engine: Engine,
    receiver: Receiver<Job>,
    depth: Arc<AtomicUsize>,
    window: Duration,
    max_rows: usize,
    metrics: Metrics,
) {
    let taken = |depth: &AtomicUsize| {
        let left = depth.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics.queued.set(left as i64);
    };
    while let Ok(first) = receiver.recv() {
        taken(&depth);
        let mut rows = first.work.rows();
        let mut jobs = vec![first];
        let deadline = Instant::now() + window;
        while rows < max_rows {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match receiver.recv_timeout(left) {
                Ok(job) => {
                    taken(&depth);
                    rows += job.work.rows();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        serve_batch(&mut engine, jobs);
    }
    tracing::info!("the model's queue is closed and empty");
}

/// Where one generation request's answer goes, with its task and inputs.
struct Member {
    reply: oneshot::Sender<Result<Done, ServeError>>,
    adapted: Adapted,
    task: usize,
    inputs: Vec<Vec<i64>>,
}

fn task_of(work: &Work) -> &TaskRef {
    match work {
        Work::Adapt(task) | Work::Generate { task, .. } | Work::Score { task, .. } => task,
    }
}

fn serve_batch(engine: &mut Engine, jobs: Vec<Job>) {
    // The batch's new tasks adapted together (a failure there leaves each to its own
    // request below, which then answers with the error).
    let all: Vec<&TaskRef> = jobs.iter().map(|job| task_of(&job.work)).collect();
    let mut made = engine.adapt_new_tasks(&all).unwrap_or_else(|err| {
        tracing::warn!(%err, "adapting the batch's new tasks together failed; adapting them one at a time");
        HashMap::new()
    });
    // Each distinct task's adaptation once for the batch.
    let mut tasks: Vec<(String, Adaptation)> = Vec::new();
    let mut groups: Vec<(GenerationConfig, Vec<Member>)> = Vec::new();
    for Job { work, reply } in jobs {
        let task = task_of(&work);
        // A task made above answers its first request as made; later ones find it cached.
        let found = match made.remove(&task.id) {
            Some(made) => Ok(made),
            None => engine.adaptation(task),
        };
        let (adaptation, adapted) = match found {
            Ok(found) => found,
            Err(err) => {
                let _ = reply.send(Err(err));
                continue;
            }
        };
        let index = match tasks.iter().position(|(id, _)| *id == task.id) {
            Some(index) => index,
            None => {
                tasks.push((task.id.clone(), adaptation));
                tasks.len() - 1
            }
        };
        match work {
            Work::Adapt(_) => {
                let _ = reply.send(Ok(Done::Adapted(adapted)));
            }
            Work::Score {
                inputs, choices, ..
            } => {
                let scored = engine.score(&tasks[index].1, &inputs, &choices);
                let _ = reply.send(scored.map(|s| Done::Scored(adapted, s)));
            }
            Work::Generate { inputs, config, .. } => {
                let member = Member {
                    reply,
                    adapted,
                    task: index,
                    inputs,
                };
                match groups.iter_mut().find(|(c, _)| *c == config) {
                    Some((_, members)) => members.push(member),
                    None => groups.push((config, vec![member])),
                }
            }
        }
    }
    let adaptations: Vec<Adaptation> = tasks.into_iter().map(|(_, a)| a).collect();
    for (config, members) in groups {
        let rows: Vec<(usize, Vec<i64>)> = members
            .iter()
            .flat_map(|m| m.inputs.iter().map(|i| (m.task, i.clone())))
            .collect();
        match engine.generate(&adaptations, &rows, &config) {
            Ok(outputs) => {
                let mut outputs = outputs.into_iter();
                for member in members {
                    let mine: Vec<Output> = outputs.by_ref().take(member.inputs.len()).collect();
                    let _ = member.reply.send(Ok(Done::Generated(member.adapted, mine)));
                }
            }
            Err(err) => {
                for member in members {
                    let _ = member.reply.send(Err(err.clone()));
                }
            }
        }
    }
}
