Console.WriteLine("relay");
