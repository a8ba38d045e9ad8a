//! The error codes an answer carries, per topic, partition or resource, so every API's
//! refusals are counted in `strom_request_errors_total{api,error}` the same way (Kafka's
//! `kafka.network:type=RequestMetrics,name=ErrorsPerSec`). The group APIs, Produce and Fetch
//! count theirs where they decide them; the answers below are counted as they leave.

use proto_kafka::messages as m;

use crate::request::RequestContext;

pub trait ErrorCodes {
    /// Every non-zero error code in the answer, once per topic, partition or resource.
    fn error_codes(&self, out: &mut Vec<i16>);
}

/// Counts each error of `body` under the context's API.
pub fn count<R: ErrorCodes>(ctx: &RequestContext, body: &R) {
    let mut codes = Vec::new();
    body.error_codes(&mut codes);
    let api = crate::metrics::api_name(ctx.api);
    for code in codes.into_iter().filter(|c| *c != 0) {
        crate::metrics::request_error_code(api, code);
    }
}

impl ErrorCodes for m::MetadataResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
        for t in &self.topics {
            out.push(t.error_code);
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    }
}

impl ErrorCodes for m::CreateTopicsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.topics.iter().map(|t| t.error_code));
    }
}

impl ErrorCodes for m::DeleteTopicsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.responses.iter().map(|t| t.error_code));
    }
}

impl ErrorCodes for m::DescribeConfigsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.results.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::DescribeClusterResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for m::InitProducerIdResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for m::ListOffsetsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        for t in &self.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    }
}

impl ErrorCodes for m::CreatePartitionsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.results.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::AlterConfigsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.responses.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::IncrementalAlterConfigsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.responses.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::DeleteRecordsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        for t in &self.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    }
}

impl ErrorCodes for m::DescribeLogDirsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
        out.extend(self.results.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::DescribeTopicPartitionsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        for t in &self.topics {
            out.push(t.error_code);
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    }
}

impl ErrorCodes for m::SaslHandshakeResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for m::SaslAuthenticateResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for m::DescribeAclsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for m::CreateAclsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.results.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::DeleteAclsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.filter_results.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::AlterUserScramCredentialsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.results.iter().map(|r| r.error_code));
    }
}

impl ErrorCodes for m::DescribeUserScramCredentialsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
        out.extend(self.results.iter().map(|r| r.error_code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_kafka::ResponseError;

    #[test]
    fn codes_come_from_every_level() {
        let body = m::MetadataResponse::default().with_topics(vec![
            m::metadata_response::MetadataResponseTopic::default()
                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            m::metadata_response::MetadataResponseTopic::default().with_partitions(vec![
                m::metadata_response::MetadataResponsePartition::default()
                    .with_error_code(ResponseError::LeaderNotAvailable.code()),
            ]),
        ]);
        let mut codes = Vec::new();
        body.error_codes(&mut codes);
        codes.retain(|c| *c != 0);
        assert_eq!(
            codes,
            vec![
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::LeaderNotAvailable.code()
            ]
        );
    }
}
