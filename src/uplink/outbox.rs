//! What is waiting to be handed to the MQTT client. rumqttc's request channel is bounded; a
//! publish it cannot take now stays here, in order, so the session loop never blocks on it
//! (a blocked loop could not notice that the link died).

use std::collections::VecDeque;

use rumqttc::{AsyncClient, ClientError, QoS, Request};

pub struct Outbox {
    client: AsyncClient,
    queue: VecDeque<(String, QoS, bool, Vec<u8>)>,
    /// Publishes above which the flow stops adding items.
    high_water: usize,
}

impl Outbox {
    pub fn new(client: AsyncClient, high_water: usize) -> Outbox {
        Outbox { client, queue: VecDeque::new(), high_water }
    }

    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    pub fn push(&mut self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) {
        self.queue.push_back((topic, qos, retain, payload));
    }

    /// Whether the flow may add more.
    pub fn ready(&mut self) -> bool {
        self.flush();
        self.queue.len() < self.high_water
    }

    /// Hands over as much as the client takes now. What it cannot take (its channel is full,
    /// or closed because the link died: the session then ends) stays queued.
    pub fn flush(&mut self) {
        while let Some((topic, qos, retain, payload)) = self.queue.pop_front() {
            match self.client.try_publish(topic, qos, retain, payload) {
                Ok(()) => {}
                Err(ClientError::TryRequest(Request::Publish(p)) | ClientError::Request(Request::Publish(p))) => {
                    self.queue.push_front((p.topic, p.qos, p.retain, p.payload.to_vec()));
                    return;
                }
                Err(_) => return,
            }
        }
    }
}
