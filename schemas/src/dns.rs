//! The `dns` table: one row per Route 53 Resolver (VPC DNS) query log record.
//!
//! Columns follow the Athena table AWS documents for Resolver query logs, lowercase. `answers` is a
//! list of structs and `srcids` a struct, as in the JSON. Keys the parser does not know (fields AWS
//! adds in a later minor version) are kept as a JSON object in `additionalfields`, so they are not
//! lost silently and can be read with JSON functions until a column is added for them.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, SchemaRef};

use crate::field;

/// Name of the list item field of `answers`; Delta Lake requires list items to be named `element`.
pub const LIST_ITEM_NAME: &str = "element";

/// The children of one `answers` entry.
pub fn answer_fields() -> Fields {
    Fields::from(vec![
        field("rdata", DataType::Utf8, "answer data (an address, a name, or the text of the record)"),
        field("type", DataType::Utf8, "record type of the answer (A, AAAA, CNAME, PTR, ...)"),
        field("class", DataType::Utf8, "class of the answer (IN)"),
    ])
}

/// The type of the `answers` column: a list of answer structs.
pub fn answers_type() -> DataType {
    DataType::List(Arc::new(answers_item()))
}

/// The item field of the `answers` list: one answer struct.
pub fn answers_item() -> Field {
    field(LIST_ITEM_NAME, DataType::Struct(answer_fields()), "one answer of the response")
}

/// The children of the `srcids` column.
pub fn srcids_fields() -> Fields {
    Fields::from(vec![
        field("instance", DataType::Utf8, "EC2 instance the query came from"),
        field("resolver_endpoint", DataType::Utf8, "Resolver endpoint that forwarded the query (inbound or outbound)"),
        field(
            "resolver_network_interface",
            DataType::Utf8,
            "network interface of the Resolver endpoint that received the query",
        ),
    ])
}

/// The table schema: the Resolver query log fields, `additionalfields`, then lineage and date.
pub fn schema() -> SchemaRef {
    let text = |name: &str, doc: &str| field(name, DataType::Utf8, doc);
    crate::with_lineage(vec![
        text("version", "query log format version, as written (e.g. 1.100000)"),
        text("account_id", "AWS account that created the VPC"),
        text("region", "Region of the VPC"),
        text("vpc_id", "VPC the query originated in"),
        field("query_timestamp", crate::utc_timestamp(), "time the query was received (UTC)"),
        text("query_name", "domain name queried, with its trailing dot"),
        text("query_type", "DNS record type queried (A, AAAA, PTR, TXT, ...)"),
        text("query_class", "DNS class queried (IN)"),
        text("rcode", "DNS response code (NOERROR, NXDOMAIN, SERVFAIL, ...)"),
        field("answers", answers_type(), "answers Resolver returned; empty when there were none"),
        text("srcaddr", "address (IPv4 or IPv6 text) of the instance or endpoint that sent the query"),
        field("srcport", DataType::Int32, "source port of the query"),
        text("transport", "protocol of the query: UDP or TCP"),
        field("srcids", DataType::Struct(srcids_fields()), "IDs of what sent the query: instance or Resolver endpoint"),
        text("firewall_rule_action", "DNS Firewall action of the matching rule: ALLOW, BLOCK or ALERT"),
        text("firewall_rule_group_id", "DNS Firewall rule group that matched the query"),
        text("firewall_domain_list_id", "DNS Firewall domain list that matched the query"),
        text("firewall_protection", "DNS Firewall Advanced protection that matched (e.g. DGA, DNS_TUNNELING)"),
        text(
            "additionalfields",
            "JSON object of any fields this version of bunker does not know; null when there were none",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_is_a_list_of_element_structs() {
        let schema = schema();
        let answers = schema.field_with_name("answers").expect("answers column");
        let DataType::List(item) = answers.data_type() else {
            panic!("answers is {}", answers.data_type());
        };
        assert_eq!(item.name(), LIST_ITEM_NAME);
        assert!(item.is_nullable());
        assert_eq!(item.data_type(), &DataType::Struct(answer_fields()));
    }

    #[test]
    fn list_children_have_docs_too() {
        // The crate-wide doc test walks struct children only; the answer fields sit below a list.
        for f in answer_fields().iter().chain(srcids_fields().iter()) {
            assert!(!crate::doc_of(f).is_empty(), "{} has no doc", f.name());
            assert_eq!(f.name().to_lowercase(), *f.name());
        }
        assert!(!crate::doc_of(&answers_item()).is_empty());
    }

    #[test]
    fn every_column_is_nullable_and_delta_typed() {
        for f in schema().fields().iter().filter(|f| !matches!(f.name().as_str(), "source_key" | "date")) {
            assert!(f.is_nullable(), "{}", f.name());
            assert!(
                matches!(
                    f.data_type(),
                    DataType::Utf8
                        | DataType::Int32
                        | DataType::Timestamp(..)
                        | DataType::List(_)
                        | DataType::Struct(_)
                ),
                "{}: {}",
                f.name(),
                f.data_type()
            );
        }
    }
}
