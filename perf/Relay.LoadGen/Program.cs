Console.WriteLine("relay-loadgen");
