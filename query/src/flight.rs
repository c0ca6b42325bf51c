//! `bunker serve`: the lake as an Arrow Flight SQL endpoint, for notebooks, BI tools and
//! JDBC/ADBC clients.
//!
//! Strictly read-only: every statement goes through [`LakeSession::plan_remote`], which refuses
//! DDL, DML, `COPY ... TO` and `SET`; the write calls of the protocol (updates, ingest) are refused
//! before they read a byte. Every call must carry `authorization: Bearer <token>`; the token is
//! compared in constant time. Statements are not kept on the server: a ticket or a prepared
//! statement handle is the SQL text itself, planned again when it is fetched, so nothing grows
//! with the number of clients.
//!
//! Every statement reads the latest committed version of the tables it names (see
//! [`LakeSession`]), and says which: the versions are the JSON object in the `FlightInfo`'s
//! `app_metadata` (`{"cloudtrail":7}`), again in the `x-bunker-table-versions` header and the
//! first message's `app_metadata` of the `DoGet` that streams the rows, and in the INFO log line
//! of each statement.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use subtle::ConstantTimeEq;
use tonic::{Request, Response, Status, Streaming};

use crate::{LakeSession, PlannedStatement, QueryError};

/// The response header of a `DoGet` that names the versions of the lake tables it read.
pub const VERSIONS_HEADER: &str = "x-bunker-table-versions";

/// The catalog and schema every lake table is in, as DataFusion names them.
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";

type FlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight SQL service over one lake session.
#[derive(Clone)]
pub struct LakeFlightService {
    session: LakeSession,
    info: Arc<SqlInfoData>,
}

impl std::fmt::Debug for LakeFlightService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeFlightService").field("session", &self.session).finish_non_exhaustive()
    }
}

/// Serves `session` on `listener` until `shutdown` completes; every call must carry `token`.
pub async fn serve(
    session: LakeSession,
    listener: tokio::net::TcpListener,
    token: String,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), QueryError> {
    let service = LakeFlightService::new(session)?;
    let expected = format!("Bearer {token}").into_bytes();
    let check = move |request: Request<()>| -> Result<Request<()>, Status> {
        let given = request.metadata().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
        if bool::from(given.ct_eq(&expected)) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("a bearer token is required: authorization: Bearer <token of bunker serve>"))
        }
    };
    tonic::transport::Server::builder()
        .add_service(FlightServiceServer::with_interceptor(service, check))
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), shutdown)
        .await
        .map_err(|e| QueryError::Io(std::io::Error::other(format!("Flight SQL server: {e}"))))
}

/// Binds `addr`, refusing addresses other than loopback unless `allow_remote`.
pub async fn bind(addr: SocketAddr, allow_remote: bool) -> Result<tokio::net::TcpListener, QueryError> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(QueryError::Io(std::io::Error::other(format!(
            "{addr} is not a loopback address: bunker serve listens on 127.0.0.1 unless --allow-remote is given \
             (and then put TLS in front of it: the token travels in clear text)"
        ))));
    }
    Ok(tokio::net::TcpListener::bind(addr).await?)
}

impl LakeFlightService {
    /// A service over `session`.
    pub fn new(session: LakeSession) -> Result<LakeFlightService, QueryError> {
        let mut builder = SqlInfoDataBuilder::new();
        builder.append(SqlInfo::FlightSqlServerName, "bunker");
        builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        builder.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        builder.append(SqlInfo::FlightSqlServerReadOnly, true);
        builder.append(SqlInfo::FlightSqlServerSql, true);
        builder.append(SqlInfo::FlightSqlServerSubstrait, false);
        builder.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        let info = builder
            .build()
            .map_err(|e| QueryError::Render(arrow::error::ArrowError::from_external_error(Box::new(e))))?;
        Ok(LakeFlightService { session, info: Arc::new(info) })
    }

    /// Plans `sql` as a remote client may run it, over the latest version of the lake.
    async fn planned(&self, sql: &str) -> Result<PlannedStatement, Status> {
        self.session.plan_remote_read(sql).await.map_err(status)
    }

    /// The FlightInfo of a statement: its schema, the ticket that runs it, and the versions of
    /// the lake tables it reads as `app_metadata`.
    async fn statement_info(
        &self,
        sql: &str,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let planned = self.planned(sql).await?;
        let info = Self::flight_info(planned.frame.schema().as_arrow(), ticket, descriptor)?.into_inner();
        Ok(Response::new(info.with_app_metadata(planned.versions.to_json().into_bytes())))
    }

    fn flight_info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Runs `sql` and streams its results as Flight data, saying which table versions it read.
    async fn stream(&self, sql: &str) -> Result<Response<FlightStream<FlightData>>, Status> {
        let PlannedStatement { frame, versions } = self.planned(sql).await?;
        tracing::info!(sql, versions = %versions, "bunker serve: statement");
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.execute_stream().await.map_err(|e| status(e.into()))?;
        let json = versions.to_json();
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_metadata(json.clone().into_bytes().into())
            .build(batches.map_err(|e| FlightError::ExternalError(Box::new(e))))
            .map_err(Status::from);
        let mut response = Response::new(Box::pin(data) as FlightStream<FlightData>);
        // Table names and numbers only: always a valid header value.
        if let Ok(value) = tonic::metadata::MetadataValue::try_from(json.as_str()) {
            response.metadata_mut().insert(VERSIONS_HEADER, value);
        }
        Ok(response)
    }

    fn one_batch(
        schema: arrow::datatypes::SchemaRef,
        batch: Result<arrow::array::RecordBatch, FlightError>,
    ) -> Response<FlightStream<FlightData>> {
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch }))
            .map_err(Status::from);
        Response::new(Box::pin(data))
    }

    /// Every lake table with its Arrow schema.
    async fn tables(&self) -> Result<Vec<(String, Arc<Schema>)>, Status> {
        let mut tables = Vec::new();
        for (name, _) in crate::table_descriptions() {
            let provider = self.session.context().table_provider(name).await.map_err(|e| status(e.into()))?;
            tables.push((name.to_owned(), provider.schema()));
        }
        Ok(tables)
    }
}

fn sql_text(bytes: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(bytes).map_err(|_| Status::invalid_argument("the statement handle is not UTF-8 SQL"))
}

fn status(error: QueryError) -> Status {
    match error {
        QueryError::Sql { .. } => Status::invalid_argument(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn read_only(what: &str) -> Status {
    Status::permission_denied(format!(
        "bunker serve is read-only: {what} is refused; the lake is written only by ingestion"
    ))
}

#[tonic::async_trait]
impl FlightSqlService for LakeFlightService {
    type FlightService = LakeFlightService;

    /// The bearer token was checked by the interceptor; a client that still shakes hands is told
    /// so and sent on.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<FlightStream<HandshakeResponse>>, Status> {
        let response = HandshakeResponse { protocol_version: 0, payload: Default::default() };
        Ok(Response::new(Box::pin(futures::stream::once(async { Ok(response) }))))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = TicketStatementQuery { statement_handle: query.query.clone().into_bytes().into() };
        self.statement_info(&query.query, ticket.as_any().encode_to_vec(), request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.stream(sql_text(&ticket.statement_handle)?).await
    }

    /// A prepared statement's handle is its SQL: planning it here checks it and gives the schema.
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let planned = self.planned(&query.query).await?;
        let schema = planned.frame.schema().as_arrow();
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(schema, &arrow::ipc::writer::IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(format!("encoding the schema: {e}")))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = sql_text(&query.prepared_statement_handle)?;
        self.statement_info(sql, query.as_any().encode_to_vec(), request.into_inner()).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.stream(sql_text(&query.prepared_statement_handle)?).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        Err(Status::unimplemented("bunker serve does not bind parameters: put the values in the SQL text"))
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_statement_ingest(
        &self,
        _query: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("bulk ingest"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("a prepared update"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("a Substrait plan"))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.info).schema();
        Self::flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&self.info);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Self::flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Self::flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Self::flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tables = self.tables().await?;
        let mut builder = query.into_builder();
        for (name, schema) in tables {
            builder.append(CATALOG, SCHEMA, &name, "TABLE", &schema).map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Self::flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!("bunker serve does not answer {}", message.type_url)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_handles_must_be_text() {
        assert_eq!(sql_text(b"SELECT 1").expect("utf-8"), "SELECT 1");
        assert_eq!(sql_text(&[0xff, 0xfe]).expect_err("not utf-8").code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn only_loopback_unless_asked() {
        let remote: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        let err = bind(remote, false).await.expect_err("0.0.0.0 refused");
        assert!(err.to_string().contains("not a loopback address"), "{err}");
        let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert!(bind(local, false).await.is_ok());
    }
}
