"""PowerAPI's report formats: HWPC (sensor) and Power (formula) reports, their files and socket.

PowerAPI (powerapi 2.10) is the reference consumer: what its `HWPCReport.from_json`,
`PowerReport.from_json`, `CsvDB` and `SocketDB` read is what these modules write.
"""
