//! The `cloudtrail` table: one row per CloudTrail record (management, data, service and Insights
//! events), in the column layout of the Athena table AWS documents for CloudTrail.
//!
//! The fixed fields are typed (`eventtime` is a UTC timestamp, `useridentity` a struct, `resources` a
//! list of structs, flags are booleans). The free-form fields whose shape depends on the API called
//! (`requestparameters`, `responseelements`, ...) are kept as compact JSON text, read in SQL with JSON
//! functions. Fields the parser does not know are not dropped: they land in `additionalfields`, a JSON
//! object keyed by their dotted path in the record.

use arrow::datatypes::{DataType, Field, Fields, SchemaRef};

use crate::field;

/// Name of the event-time column (a UTC timestamp); the table's time column.
pub const EVENT_TIME: &str = "eventtime";
/// Name of the column holding every field of a record the parser did not recognise, as JSON text.
pub const ADDITIONAL_FIELDS: &str = "additionalfields";
/// Name of the item field of every list column: Delta Lake's kernel names list items `element`, and a
/// different name makes the table unreadable to it.
pub const LIST_ELEMENT: &str = "element";

/// A nullable text column.
fn text(name: &str, doc: &str) -> Field {
    field(name, DataType::Utf8, doc)
}

/// A nullable text column holding compact JSON text.
fn json(name: &str, doc: &str) -> Field {
    field(name, DataType::Utf8, doc)
}

/// A nullable boolean column.
fn flag(name: &str, doc: &str) -> Field {
    field(name, DataType::Boolean, doc)
}

/// A nullable struct column.
fn record(name: &str, doc: &str, children: Vec<Field>) -> Field {
    field(name, DataType::Struct(Fields::from(children)), doc)
}

/// `useridentity.sessioncontext`: the temporary-credential session behind the call.
fn session_context() -> Field {
    record(
        "sessioncontext",
        "session the temporary credentials belong to",
        vec![
            record(
                "attributes",
                "when and how the session was created",
                vec![
                    flag("mfaauthenticated", "whether the session's root credentials were MFA-authenticated"),
                    field("creationdate", crate::utc_timestamp(), "when the temporary credentials were issued"),
                ],
            ),
            record(
                "sessionissuer",
                "the entity that issued the session (usually an IAM role)",
                vec![
                    text("type", "kind of issuer: Root, IAMUser or Role"),
                    text("principalid", "internal ID of the issuer"),
                    text("arn", "ARN of the issuer"),
                    text("accountid", "account that owns the issuer"),
                    text("username", "friendly name of the issuer"),
                ],
            ),
            record(
                "webidfederationdata",
                "web identity federation the session came from",
                vec![
                    text("federatedprovider", "identity provider (for example accounts.google.com)"),
                    json("attributes", "provider attributes, as JSON text"),
                ],
            ),
            text("sourceidentity", "source identity set when the role was assumed"),
            text("ec2roledelivery", "instance metadata service version that delivered EC2 role credentials"),
            text("assumedroot", "whether the session came from a centralised-root AssumeRoot call"),
        ],
    )
}

/// `useridentity`: who made the request.
fn user_identity() -> Field {
    record(
        "useridentity",
        "the identity that made the request",
        vec![
            text("type", "kind of identity: Root, IAMUser, AssumedRole, AWSService, ..."),
            text("principalid", "unique ID of the principal"),
            text("arn", "ARN of the principal"),
            text("accountid", "account that owns the principal"),
            text("invokedby", "AWS service that made the request on the principal's behalf"),
            text("accesskeyid", "access key used to sign the request"),
            text("username", "friendly name of the principal"),
            record(
                "onbehalfof",
                "IAM Identity Center user the request was made for",
                vec![
                    text("userid", "Identity Center user ID"),
                    text("identitystorearn", "ARN of the Identity Center identity store"),
                ],
            ),
            session_context(),
            text("identityprovider", "external identity provider of a federated user"),
            text("credentialid", "ID of the credential used (Identity Center bearer tokens)"),
        ],
    )
}

/// The `resources` item: one AWS resource the event touched.
fn resource() -> Field {
    Field::new(
        LIST_ELEMENT,
        DataType::Struct(Fields::from(vec![
            text("arn", "ARN of the resource"),
            text("accountid", "account that owns the resource"),
            text("type", "resource type, for example AWS::S3::Bucket"),
        ])),
        true,
    )
}

/// The schema of the `cloudtrail` table, lineage and date columns included.
pub fn schema() -> SchemaRef {
    crate::with_lineage(vec![
        text("eventversion", "version of the CloudTrail record format"),
        user_identity(),
        field(EVENT_TIME, crate::utc_timestamp(), "when the request was completed (UTC)"),
        text("eventsource", "service the request was made to, for example iam.amazonaws.com"),
        text("eventname", "the API action or event, for example AssumeRole"),
        text("awsregion", "region the request was made to"),
        text("sourceipaddress", "IP address (or service name) the request came from"),
        text("useragent", "agent through which the request was made"),
        text("errorcode", "AWS error code, when the request failed"),
        text("errormessage", "error message, when the request failed"),
        json("requestparameters", "parameters of the request, as JSON text"),
        json("responseelements", "response elements of write actions, as JSON text"),
        json("additionaleventdata", "extra data about the event, as JSON text"),
        text("requestid", "ID of the request, generated by the service"),
        text("eventid", "GUID generated by CloudTrail for this record"),
        flag("readonly", "whether the operation only reads"),
        field("resources", DataType::List(resource().into()), "resources accessed by the event"),
        text("eventtype", "AwsApiCall, AwsServiceEvent, AwsConsoleSignIn, AwsCloudTrailInsight, ..."),
        text("apiversion", "API version of the call, for the services that have one"),
        flag("managementevent", "whether this is a management (control-plane) event"),
        text("recipientaccountid", "account that received this event"),
        json("serviceeventdetails", "details of a service event, as JSON text"),
        text("sharedeventid", "GUID shared by the copies of an event delivered to several accounts"),
        text("vpcendpointid", "VPC endpoint the request came through"),
        text("vpcendpointaccountid", "account that owns the VPC endpoint"),
        text("eventcategory", "Management, Data, NetworkActivity or Insight"),
        record(
            "addendum",
            "why a late or corrected event was delivered",
            vec![
                text("reason", "reason for the addendum"),
                text("updatedfields", "fields the addendum changes"),
                text("originalrequestid", "request ID of the original event"),
                text("originaleventid", "event ID of the original event"),
            ],
        ),
        flag("sessioncredentialfromconsole", "whether the credentials came from a console session"),
        json("edgedevicedetails", "the edge device (Snow family) the request came from, as JSON text"),
        record(
            "tlsdetails",
            "TLS used by the client",
            vec![
                text("tlsversion", "TLS protocol version"),
                text("ciphersuite", "negotiated cipher suite"),
                text("clientprovidedhostheader", "host name the client asked for"),
            ],
        ),
        json("insightdetails", "details of a CloudTrail Insights event, as JSON text"),
        json(
            ADDITIONAL_FIELDS,
            "every field the parser did not recognise, as a JSON object keyed by dotted path; null when none",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type Delta Lake can store; anything else makes the table unwritable.
    fn assert_delta_compatible(path: &str, data_type: &DataType) {
        match data_type {
            DataType::Utf8 | DataType::Boolean | DataType::Int32 | DataType::Int64 | DataType::Date32 => {}
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(tz)) => {
                assert_eq!(tz.as_ref(), "UTC", "{path}")
            }
            DataType::Struct(children) => {
                for c in children {
                    assert!(c.is_nullable(), "{path}.{} must be nullable", c.name());
                    assert_delta_compatible(&format!("{path}.{}", c.name()), c.data_type());
                }
            }
            DataType::List(item) => {
                assert_eq!(item.name(), LIST_ELEMENT, "{path}: list items must be named element");
                assert_delta_compatible(&format!("{path}[]"), item.data_type());
            }
            other => panic!("{path}: {other} is not a Delta Lake type"),
        }
    }

    #[test]
    fn columns_are_in_athena_order_and_delta_compatible() {
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[..3], ["eventversion", "useridentity", EVENT_TIME]);
        assert_eq!(names[names.len() - 4..], [ADDITIONAL_FIELDS, "source_bucket", "source_key", "date"]);
        for f in schema.fields().iter().take(names.len() - 3) {
            assert!(f.is_nullable(), "{} must be nullable", f.name());
            assert_delta_compatible(f.name(), f.data_type());
        }
    }

    #[test]
    fn typed_columns() {
        let schema = schema();
        let cases = [
            ("eventtime", crate::utc_timestamp()),
            ("readonly", DataType::Boolean),
            ("managementevent", DataType::Boolean),
            ("sessioncredentialfromconsole", DataType::Boolean),
            ("requestparameters", DataType::Utf8),
            ("recipientaccountid", DataType::Utf8),
        ];
        for (name, expected) in cases {
            assert_eq!(schema.field_with_name(name).expect(name).data_type(), &expected, "{name}");
        }
    }
}
