//! Membership reads that arrive together go to Redis together.
//!
//! Every read is the tenant's `ready` marker and one set command after it. Sent one call at a time, each read is a
//! write to Redis, a wake-up of Redis and a reply of its own, and on a busy machine those were a fifth of a read's
//! time. Here the reads are queued to one task, which takes the first, yields once (the calls being answered in the
//! same turn of the scheduler queue theirs meanwhile) and sends everything queued as one pipeline: each tenant's
//! marker once, then every read's command, in that order, as a call on its own would. A lone read waits one turn of
//! the scheduler, no timer.

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};

use crate::domain::segments::SegmentId;

/// The most reads in one pipeline: about 8 KiB of commands, less than Redis takes from a connection in one read
/// (16 KiB), so a batch's commands run back to back as one read's own pipeline does, its markers right before its
/// set reads.
const MOST: usize = 64;

/// What a read asks of the customer's set.
#[derive(Debug, Clone, Copy)]
pub(super) enum Query {
    /// SMEMBERS: every segment the customer is in.
    Segments,
    /// SISMEMBER: whether the customer is in this one.
    Member(SegmentId),
}

/// A read's answer: the tenant's marker and the set command's reply.
pub(super) type Answer = (Option<String>, Value);

struct Read {
    ready_key: String,
    customer_key: String,
    query: Query,
    reply: oneshot::Sender<RedisResult<Answer>>,
}

/// The queue of reads waiting to go to Redis.
#[derive(Clone)]
pub(super) struct Reads {
    queue: mpsc::UnboundedSender<Read>,
}

impl Reads {
    /// Starts the task that sends the reads over `connection`; it stops when the last `Reads` is dropped.
    pub(super) fn start(connection: ConnectionManager) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(send_together(connection, waiting));
        Self { queue }
    }

    /// Reads the marker at `ready_key` and asks `query` of the set at `customer_key`.
    pub(super) async fn read(
        &self,
        ready_key: String,
        customer_key: String,
        query: Query,
    ) -> RedisResult<Answer> {
        let (reply, answer) = oneshot::channel();
        let read = Read {
            ready_key,
            customer_key,
            query,
            reply,
        };
        self.queue.send(read).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> RedisError {
    RedisError::from((ErrorKind::Client, "the cache's read queue has stopped"))
}

async fn send_together(connection: ConnectionManager, mut waiting: mpsc::UnboundedReceiver<Read>) {
    while let Some(first) = waiting.recv().await {
        tokio::task::yield_now().await;
        let mut reads = vec![first];
        while reads.len() < MOST
            && let Ok(read) = waiting.try_recv()
        {
            reads.push(read);
        }
        // Sent while the next reads gather: one slow reply does not hold back the ones after it.
        tokio::spawn(send(connection.clone(), reads));
    }
}

async fn send(mut connection: ConnectionManager, reads: Vec<Read>) {
    let mut markers: Vec<&str> = Vec::new();
    let mut marker_of = Vec::with_capacity(reads.len());
    for read in &reads {
        let index = match markers.iter().position(|key| *key == read.ready_key) {
            Some(index) => index,
            None => {
                markers.push(&read.ready_key);
                markers.len() - 1
            }
        };
        marker_of.push(index);
    }
    let mut pipe = redis::pipe();
    for key in &markers {
        pipe.get(*key);
    }
    for read in &reads {
        match read.query {
            Query::Segments => pipe.smembers(&read.customer_key),
            Query::Member(segment) => pipe.sismember(&read.customer_key, segment),
        };
    }
    let replies: RedisResult<Vec<Value>> = pipe.query_async(&mut connection).await;
    let answers = replies.and_then(|mut replies| {
        if replies.len() != markers.len() + reads.len() {
            return Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "a pipeline of reads got a different number of replies",
            )));
        }
        let commands = replies.split_off(markers.len());
        let markers = replies
            .into_iter()
            .map(redis::from_redis_value::<Option<String>>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((markers, commands))
    });
    match answers {
        Ok((markers, commands)) => {
            for ((read, marker), reply) in reads.into_iter().zip(marker_of).zip(commands) {
                let _ = read.reply.send(Ok((markers[marker].clone(), reply)));
            }
        }
        Err(err) => {
            for read in reads {
                let _ = read.reply.send(Err(err.clone()));
            }
        }
    }
}
