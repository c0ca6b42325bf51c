//! The `vpcflow` table: one row per VPC or transit-gateway flow-log record.
//!
//! The table is the union of every field AWS publishes for VPC flow logs (versions 2 to 8, the ECS
//! fields of version 7, `reject-reason` of version 8 and `encryption-status` of VPC Encryption
//! Controls) and for transit-gateway flow logs. A file only carries the fields its flow log was
//! configured with; the others are null in its rows, as are values AWS writes as `-`.
//!
//! [`COLUMNS`] is the single list of those fields: it gives each column its Athena-style name
//! (`log-status` becomes `log_status`), the name AWS writes in the header line, the kind of value,
//! and the doc. [`schema`] is built from it, and the flow-log parser in `bunker-ingest` uses it to
//! map header names to columns, so the two cannot drift apart.

use arrow::datatypes::{DataType, SchemaRef};

/// The kind of value a flow-log field holds, which decides its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowValueKind {
    /// Free text (identifiers, addresses, enumerations): `Utf8`.
    Text,
    /// A small integer (version, port, protocol, TCP flags, codes): `Int32`.
    Int32,
    /// A counter that can exceed 2^31 (packets, bytes): `Int64`.
    Int64,
    /// Whole seconds since the epoch, stored as a UTC timestamp in microseconds.
    EpochSeconds,
}

impl FlowValueKind {
    /// The Arrow type of a column of this kind.
    pub fn data_type(self) -> DataType {
        match self {
            FlowValueKind::Text => DataType::Utf8,
            FlowValueKind::Int32 => DataType::Int32,
            FlowValueKind::Int64 => DataType::Int64,
            FlowValueKind::EpochSeconds => crate::utc_timestamp(),
        }
    }
}

/// One field of a flow-log record and the column that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowColumn {
    /// Column name in the lake (Athena style: lowercase, `_` for `-`).
    pub name: &'static str,
    /// The field's name as AWS writes it in the header line of a log file.
    pub aws_name: &'static str,
    /// The kind of value, which gives the column's type.
    pub kind: FlowValueKind,
    /// One-line doc of the column.
    pub doc: &'static str,
}

const fn col(name: &'static str, aws_name: &'static str, kind: FlowValueKind, doc: &'static str) -> FlowColumn {
    FlowColumn { name, aws_name, kind, doc }
}

use FlowValueKind::{EpochSeconds, Int32, Int64, Text};

/// Every flow-log column in table order: the VPC fields in the order of AWS's field table (which is
/// also the order of a line written without a header), then the transit-gateway-only fields.
pub const COLUMNS: [FlowColumn; 59] = [
    col(
        "version",
        "version",
        Int32,
        "flow log version: 2 for the default format, else the highest version of the fields in a custom format (6 for transit gateway)",
    ),
    col(
        "account_id",
        "account-id",
        Text,
        "AWS account that owns the source network interface (or the transit gateway); `unknown` for some AWS-managed interfaces",
    ),
    col("interface_id", "interface-id", Text, "network interface whose traffic is recorded"),
    col(
        "srcaddr",
        "srcaddr",
        Text,
        "source address (IPv4 or IPv6 text); for outgoing traffic, the interface's private address",
    ),
    col(
        "dstaddr",
        "dstaddr",
        Text,
        "destination address (IPv4 or IPv6 text); for incoming traffic, the interface's private address",
    ),
    col("srcport", "srcport", Int32, "source port (0-65535)"),
    col("dstport", "dstport", Int32, "destination port (0-65535)"),
    col("protocol", "protocol", Int32, "IANA protocol number (6 TCP, 17 UDP, 1 ICMP)"),
    col("packets", "packets", Int64, "packets transferred during the flow"),
    col("bytes", "bytes", Int64, "bytes transferred during the flow"),
    col("start", "start", EpochSeconds, "time the first packet of the flow was seen in the aggregation interval (UTC)"),
    col("end", "end", EpochSeconds, "time the last packet of the flow was seen in the aggregation interval (UTC)"),
    col("action", "action", Text, "ACCEPT or REJECT, as decided by security groups and network ACLs"),
    col("log_status", "log-status", Text, "OK, NODATA (no traffic in the interval) or SKIPDATA (records were skipped)"),
    col("vpc_id", "vpc-id", Text, "VPC of the network interface"),
    col("subnet_id", "subnet-id", Text, "subnet of the network interface"),
    col("instance_id", "instance-id", Text, "instance the network interface is attached to, when owned by the account"),
    col(
        "tcp_flags",
        "tcp-flags",
        Int32,
        "bitwise OR of the TCP flags seen in the interval (FIN 1, SYN 2, RST 4, SYN-ACK 18)",
    ),
    col("type", "type", Text, "traffic type: IPv4, IPv6 or EFA"),
    col(
        "pkt_srcaddr",
        "pkt-srcaddr",
        Text,
        "packet-level (original) source address, e.g. behind a NAT or load balancer",
    ),
    col("pkt_dstaddr", "pkt-dstaddr", Text, "packet-level (original) destination address"),
    col("region", "region", Text, "Region of the network interface"),
    col("az_id", "az-id", Text, "Availability Zone ID of the network interface"),
    col("sublocation_type", "sublocation-type", Text, "wavelength, outpost or localzone, when the interface is in one"),
    col("sublocation_id", "sublocation-id", Text, "ID of the sublocation (Wavelength Zone, Outpost or Local Zone)"),
    col(
        "pkt_src_aws_service",
        "pkt-src-aws-service",
        Text,
        "AWS service the source address belongs to (e.g. S3, AMAZON, CLOUDFRONT)",
    ),
    col("pkt_dst_aws_service", "pkt-dst-aws-service", Text, "AWS service the destination address belongs to"),
    col("flow_direction", "flow-direction", Text, "ingress or egress, relative to the interface"),
    col(
        "traffic_path",
        "traffic-path",
        Int32,
        "path egress traffic took to its destination (1 another resource in the VPC ... 8 through a VPC peering or transit gateway)",
    ),
    col("ecs_cluster_arn", "ecs-cluster-arn", Text, "ARN of the ECS cluster of the task"),
    col("ecs_cluster_name", "ecs-cluster-name", Text, "name of the ECS cluster of the task"),
    col(
        "ecs_container_instance_arn",
        "ecs-container-instance-arn",
        Text,
        "ARN of the ECS container instance running the task (EC2 launch type)",
    ),
    col(
        "ecs_container_instance_id",
        "ecs-container-instance-id",
        Text,
        "ID of the ECS container instance running the task (EC2 launch type)",
    ),
    col("ecs_container_id", "ecs-container-id", Text, "Docker runtime ID of the task's first container"),
    col("ecs_second_container_id", "ecs-second-container-id", Text, "Docker runtime ID of the task's second container"),
    col("ecs_service_name", "ecs-service-name", Text, "ECS service the task belongs to"),
    col("ecs_task_definition_arn", "ecs-task-definition-arn", Text, "ARN of the ECS task definition"),
    col("ecs_task_arn", "ecs-task-arn", Text, "ARN of the ECS task"),
    col("ecs_task_id", "ecs-task-id", Text, "ID of the ECS task"),
    col(
        "reject_reason",
        "reject-reason",
        Text,
        "why traffic was rejected when not by a security group or ACL (e.g. BPA: VPC Block Public Access)",
    ),
    col(
        "encryption_status",
        "encryption-status",
        Int32,
        "VPC Encryption Controls: 0 not encrypted, 1 Nitro-encrypted, 2 application-encrypted, 3 both",
    ),
    col(
        "resource_type",
        "resource-type",
        Text,
        "transit gateway flow logs: type of resource the traffic passed (TransitGateway or TransitGatewayAttachment)",
    ),
    col("tgw_id", "tgw-id", Text, "transit gateway the traffic passed through"),
    col("tgw_attachment_id", "tgw-attachment-id", Text, "transit gateway attachment the traffic entered through"),
    col("tgw_src_vpc_account_id", "tgw-src-vpc-account-id", Text, "account of the source VPC (transit gateway)"),
    col("tgw_dst_vpc_account_id", "tgw-dst-vpc-account-id", Text, "account of the destination VPC (transit gateway)"),
    col("tgw_src_vpc_id", "tgw-src-vpc-id", Text, "source VPC of the traffic (transit gateway)"),
    col("tgw_dst_vpc_id", "tgw-dst-vpc-id", Text, "destination VPC of the traffic (transit gateway)"),
    col("tgw_src_subnet_id", "tgw-src-subnet-id", Text, "source subnet of the traffic (transit gateway)"),
    col("tgw_dst_subnet_id", "tgw-dst-subnet-id", Text, "destination subnet of the traffic (transit gateway)"),
    col("tgw_src_eni", "tgw-src-eni", Text, "transit gateway attachment interface on the source side"),
    col("tgw_dst_eni", "tgw-dst-eni", Text, "transit gateway attachment interface on the destination side"),
    col("tgw_src_az_id", "tgw-src-az-id", Text, "Availability Zone ID of the source attachment interface"),
    col("tgw_dst_az_id", "tgw-dst-az-id", Text, "Availability Zone ID of the destination attachment interface"),
    col(
        "tgw_pair_attachment_id",
        "tgw-pair-attachment-id",
        Text,
        "for an attachment's flow, the attachment on the other side of the transit gateway",
    ),
    col(
        "packets_lost_no_route",
        "packets-lost-no-route",
        Int64,
        "packets dropped by the transit gateway for lack of a route",
    ),
    col(
        "packets_lost_blackhole",
        "packets-lost-blackhole",
        Int64,
        "packets dropped by a blackhole route of the transit gateway",
    ),
    col(
        "packets_lost_mtu_exceeded",
        "packets-lost-mtu-exceeded",
        Int64,
        "packets dropped by the transit gateway for exceeding the MTU",
    ),
    col(
        "packets_lost_ttl_expired",
        "packets-lost-ttl-expired",
        Int64,
        "packets dropped by the transit gateway because their TTL expired",
    ),
];

/// How many leading [`COLUMNS`] AWS's documented VPC field order covers: a line written without a
/// header follows this order, truncated to its number of fields.
///
/// It stops at `reject-reason` (version 8): where `encryption-status` goes in a header-less line is
/// not something we can check, and a wrong guess would mis-file values silently.
pub const DOCUMENTED_ORDER_LEN: usize = 40;

/// The fields of a transit-gateway flow-log line in AWS's default transit-gateway format, in order.
pub const TGW_DEFAULT_FORMAT: [&str; 36] = [
    "version",
    "resource-type",
    "account-id",
    "tgw-id",
    "tgw-attachment-id",
    "tgw-src-vpc-account-id",
    "tgw-dst-vpc-account-id",
    "tgw-src-vpc-id",
    "tgw-dst-vpc-id",
    "tgw-src-subnet-id",
    "tgw-dst-subnet-id",
    "tgw-src-eni",
    "tgw-dst-eni",
    "tgw-src-az-id",
    "tgw-dst-az-id",
    "tgw-pair-attachment-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "log-status",
    "type",
    "packets-lost-no-route",
    "packets-lost-blackhole",
    "packets-lost-mtu-exceeded",
    "packets-lost-ttl-expired",
    "tcp-flags",
    "region",
    "flow-direction",
    "pkt-src-aws-service",
    "pkt-dst-aws-service",
];

/// The index in [`COLUMNS`] of the field AWS writes as `aws_name` in a header line.
pub fn column_index(aws_name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| c.aws_name == aws_name)
}

/// The table schema: every column of [`COLUMNS`], then the lineage and date columns.
pub fn schema() -> SchemaRef {
    crate::with_lineage(COLUMNS.iter().map(|c| crate::field(c.name, c.kind.data_type(), c.doc)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_aws_names_in_athena_style() {
        for c in &COLUMNS {
            assert_eq!(c.name, c.aws_name.replace('-', "_"), "{}", c.aws_name);
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
    }

    #[test]
    fn known_columns_have_their_types() {
        let schema = schema();
        for (name, ty) in [
            ("version", DataType::Int32),
            ("srcport", DataType::Int32),
            ("packets", DataType::Int64),
            ("start", crate::utc_timestamp()),
            ("end", crate::utc_timestamp()),
            ("srcaddr", DataType::Utf8),
            ("packets_lost_ttl_expired", DataType::Int64),
        ] {
            assert_eq!(schema.field_with_name(name).map(|f| f.data_type().clone()).ok(), Some(ty), "{name}");
        }
    }

    #[test]
    fn documented_order_is_the_vpc_field_table() {
        // The default (version 2) format is the first 14 fields of the documented order.
        let default: Vec<_> = COLUMNS[..14].iter().map(|c| c.aws_name).collect();
        assert_eq!(
            default.join(" "),
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
        );
        assert_eq!(COLUMNS[DOCUMENTED_ORDER_LEN - 1].aws_name, "reject-reason");
    }

    #[test]
    fn every_tgw_default_field_is_a_column() {
        for name in TGW_DEFAULT_FORMAT {
            assert!(column_index(name).is_some(), "{name}");
        }
    }
}
