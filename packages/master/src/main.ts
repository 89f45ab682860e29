process.stderr.write('pacha-master: not built yet\n');
process.exitCode = 1;
